"""Post-training analysis: held-out diffusion-loss probe, layer drift, collapse diagnostics, compare.

Each command is a module with a pure-ish `run_*` function and a `python -m dllm_jepa_train.analysis`
subcommand (see `__main__.py`). Bad input (a missing or malformed file, checkpoints that do not share a
tokenizer, an empty text file) raises `AnalysisError`, which the command line prints as `error: ...`
and exits with status 2.
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Bad input to an analysis command; the message names the file or checkpoint at fault."""
