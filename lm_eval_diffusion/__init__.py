"""lm-eval adapter for masked diffusion language models (LLaDA, Dream, generic masked LMs).

Kept import-light on purpose: the package's startup hook imports it in every Python process.
"""

from pathlib import Path

# The family registry's live list of names; the trainer config's model.family allows these too.
from lm_eval_diffusion.families import FAMILIES  # noqa: F401

__version__ = "0.1.0"

MODEL_NAMES = ("llada_diffusion", "diffusion_lm")


def tasks_dir() -> Path:
    """The folder of this project's lm-eval task YAMLs (installed copy first, then the checkout's)."""
    installed = Path(__file__).resolve().parent / "_tasks"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "tasks"
