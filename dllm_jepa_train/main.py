"""Fine-tune a masked diffusion LM with DLLM-JEPA (jepa.lambda = 0: the diffusion-only baseline).

Smallest CPU run (builds synthetic data and a tiny LLaDA-like model in runs/tiny_jepa; under a minute):

    python dllm_jepa_train/main.py --config dllm_jepa_train/configs/tiny_jepa.yaml --run.engine torch

Paper runs (one or more GPUs, ZeRO-2, bf16):

    deepspeed dllm_jepa_train/main.py --config dllm_jepa_train/configs/gsm8k_jepa.yaml --run.seed 123

Overrides are `--section.key value` (e.g. --model.pretrained DIR, --jepa.lambda 0.5, --run.output_dir DIR);
an unknown key or a bad value fails before any model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script path: Python put this folder first on sys.path, where config.py, data.py ...
    # would shadow other top-level modules; put the project root there instead.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from dllm_jepa_train.config import ConfigError, load_config

USAGE = "usage: main.py --config FILE.yaml [--section.key value ...]"


def split_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """(config path, overrides); drops the `--local_rank` argument the deepspeed launcher appends."""
    config, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(__doc__ + "\n" + USAGE)
            raise SystemExit(0)
        if arg == "--config" or arg.startswith("--config="):
            if "=" in arg:
                config = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                config, i = argv[i + 1], i + 1
            else:
                raise ConfigError("--config needs a file")
        elif arg.startswith("--local_rank"):
            i += 0 if "=" in arg else 1
        else:
            rest.append(arg)
        i += 1
    return config, rest


def main(argv: list[str] | None = None) -> None:
    """Parse and validate the config (no model is loaded before that succeeds), then train."""
    config_path, overrides = split_args(sys.argv[1:] if argv is None else list(argv))
    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    from dllm_jepa_train.trainer import run

    run(cfg)


if __name__ == "__main__":
    main()
