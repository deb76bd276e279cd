"""Fine-tune a masked diffusion LM with DLLM-JEPA (jepa.lambda = 0: the diffusion-only baseline).

Smallest CPU run (builds synthetic data and a tiny LLaDA-like model in runs/tiny_jepa; under a minute):

    python dllm_jepa_train/main.py --config dllm_jepa_train/configs/tiny_jepa.yaml --run.engine torch

Paper runs (one or more GPUs, ZeRO-2, bf16):

    deepspeed dllm_jepa_train/main.py --config dllm_jepa_train/configs/gsm8k_jepa.yaml --run.seed 123

Options are `--section.key value` (e.g. --model.pretrained DIR, --jepa.lambda 0.5, --run.output_dir DIR),
applied over the defaults and the `--config` file(s) (repeat --config to layer an override set, e.g.
--config configs/gsm8k_jepa.yaml --config configs/dream7b.yaml). An unknown key or a bad value fails
before any model loads; `--dry-run` prints the resolved config (with the accumulation derived from
optim.global_batch_size for this launch's world size) and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script path: Python put this folder first on sys.path, where config.py, data.py ...
    # would shadow other top-level modules; put the project root there instead.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from jsonargparse import DefaultHelpFormatter  # noqa: E402

from dllm_jepa_train.config import (  # noqa: E402
    ConfigError, as_written, build_parser, parse_args, resolve_batch, to_dict, validate)


class OptionHelp(DefaultHelpFormatter):
    """`--help`: main.py's docstring as written, then each option as `--section.key (default D)` over its help."""

    def _format_action(self, action: argparse.Action) -> str:
        if "." not in action.dest:  # --help, --config, --dry-run
            return super()._format_action(action)
        default = json.dumps(as_written(action.dest, action.default))
        return f"  {action.option_strings[0]} (default {default})\n      {action.help}\n"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def world_size() -> int:
    """Ranks of this launch, as the launcher (deepspeed, torchrun) tells it; 1 under plain python."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def main(argv: list[str] | None = None) -> None:
    """Parse, validate and resolve the config (no model is loaded before that succeeds), then train."""
    try:
        cfg, args = parse_args(sys.argv[1:] if argv is None else list(argv), build_parser(__doc__, OptionHelp))
        validate(cfg)
        cfg = resolve_batch(cfg, world_size())
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        print(f"# {world_size()} rank(s) x micro-batch {cfg.optim.micro_batch_size} x accumulation "
              f"{cfg.optim.grad_accum} = {world_size() * cfg.optim.micro_batch_size * cfg.optim.grad_accum} "
              "rows per optimizer step")
        return
    from dllm_jepa_train.build import run

    run(cfg)


if __name__ == "__main__":
    main()
