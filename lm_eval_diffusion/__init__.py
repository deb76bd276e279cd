"""lm-eval adapter for masked diffusion language models (LLaDA, Dream, generic masked LMs).

Kept import-light on purpose: the package's startup hook imports it in every Python process.
"""

from pathlib import Path

__version__ = "0.1.0"

MODEL_NAMES = ("llada_diffusion", "diffusion_lm")
FAMILIES = ("llada", "dream", "generic")  # model families backbone.py knows; the trainer config allows these too


def tasks_dir() -> Path:
    """The folder of this project's lm-eval task YAMLs (installed copy first, then the checkout's)."""
    installed = Path(__file__).resolve().parent / "_tasks"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "tasks"
