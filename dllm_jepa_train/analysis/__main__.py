"""Command line of the analysis tools: probe, drift, collapse, compare.

    python -m dllm_jepa_train.analysis probe --base BASE --finetunes FT [FT ...] [--text-file F] --out probe.json
    python -m dllm_jepa_train.analysis drift --base BASE --finetunes A B [--include-embeddings] --out drift.json
    python -m dllm_jepa_train.analysis collapse --checkpoint runs/x/final --out collapse.json
    python -m dllm_jepa_train.analysis compare --results eval_out/ --probe probe.json --drift drift.json --out report/

Smallest CPU run (tiny model and synthetic text, no network):

    python -m dllm_jepa_train.toy.synthetic --out /tmp/syn --seed 0 --scale 0.1
    python -c "from dllm_jepa_train.toy.models import build_tiny_checkpoint as b; b('/tmp/tiny')"
    python -m dllm_jepa_train.analysis probe --base /tmp/tiny --finetunes /tmp/tiny \
        --text-file /tmp/syn/text/valid.txt --num-docs 8 --out /tmp/probe.json

Bad input (missing or malformed files, checkpoints with different tokenizers, an empty text file)
prints `error: ...` naming the file and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dllm_jepa_train.analysis import AnalysisError


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="auto",
                        help="auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32")
    parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=8, help="documents per forward; results do not depend on it")
    parser.add_argument("--compile", action="store_true",
                        help="run the forwards through torch.compile (dynamic shapes; worth it for many documents "
                             "on a GPU; results equal up to kernel rounding)")


def _text_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-file", default=None,
                        help="held-out text, one document per line (default: Wikitext-103 validation via datasets)")
    parser.add_argument("--max-length", type=int, default=512,
                        help="tokens kept per document: its first N (the rest is not scored)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of all four subcommands."""
    parser = argparse.ArgumentParser(prog="python -m dllm_jepa_train.analysis", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)

    probe = sub.add_parser("probe", help="held-out diffusion loss of a base and fine-tunes (functional forgetting)")
    probe.add_argument("--base", required=True, help="base checkpoint (local dir or hub id)")
    probe.add_argument("--finetunes", nargs="+", required=True,
                       help="fine-tuned checkpoints (a LoRA adapter folder loads as its base + adapter, merged)")
    _text_options(probe)
    probe.add_argument("--num-docs", type=int, default=1000, help="the first N documents of the source")
    probe.add_argument("--seed", type=int, default=0, help="masks of document i come from (seed, i)")
    probe.add_argument("--mask-rate", type=float, default=0.5, help="fraction of each document's tokens masked")
    _model_options(probe)
    probe.add_argument("--out", default="probe.json", help="JSON output path")

    drift = sub.add_parser("drift", help="per-layer drift 1 - cos(pooled hidden states) of fine-tunes from the base")
    drift.add_argument("--base", required=True, help="base checkpoint (local dir or hub id)")
    drift.add_argument("--finetunes", nargs="+", required=True,
                       help="fine-tuned checkpoints (LoRA adapter folders too); with exactly two (A B) the "
                            "ratio A / B is reported")
    _text_options(drift)
    drift.add_argument("--num-samples", type=int, default=100, help="the first N documents of the source")
    drift.add_argument("--include-embeddings", action="store_true",
                       help="also hidden state 0, the embedding output (default: the N transformer layers, as in §5)")
    _model_options(drift)
    drift.add_argument("--out", default="drift.json", help="JSON output path")

    collapse = sub.add_parser("collapse", help="std, effective rank, cosine diversity of pooled z_L and z_H")
    collapse.add_argument("--checkpoint", required=True, help="a trainer export, e.g. runs/jepa_s42/final (a LoRA run's: "
                          "its adapter folder, or final_merged)")
    collapse.add_argument("--config", default=None, help="run config (default: <checkpoint>/../config.yaml)")
    collapse.add_argument("--t-context", default=None,
                          help="t_L: number or lo,hi (default: the run's diffusion.t_context; 0.2 without a run config)")
    collapse.add_argument("--t-target", default=None,
                          help="t_H: number or lo,hi (default: the run's jepa.t_target; 0.7 without a run config)")
    collapse.add_argument("--data", default="wikitext", choices=("wikitext", "run"),
                          help="documents: Wikitext-103 validation (A.7) or the run's data source, held-out split")
    collapse.add_argument("--text-file", default=None,
                          help="documents, one per line, in place of Wikitext-103 (offline)")
    collapse.add_argument("--split", default=None, help="--data run: split (default: first non-train)")
    collapse.add_argument("--data-dir", default=None, help="--data run: task data root (default: as in the run config)")
    collapse.add_argument("--num-samples", type=int, default=100, help="documents (A.7: 100)")
    collapse.add_argument("--num-pairs", type=int, default=5000,
                          help="pairs of distinct rows for the cosine diversity, drawn with replacement (A.7: 5,000)")
    collapse.add_argument("--seed", type=int, default=None, help="row choice and views (default: the run's run.seed)")
    collapse.add_argument("--max-length", type=int, default=None, help="default: the run's data.max_length")
    collapse.add_argument("--target", default="online", choices=("online", "ema"),
                          help="weights for z_H: online (the checkpoint's, A.7) or ema (<checkpoint>/jepa/"
                               "ema.safetensors; a LoRA adapter export: base + jepa/ema_adapter.safetensors)")
    _model_options(collapse)
    collapse.add_argument("--out", default="collapse.json", help="JSON output path")

    compare = sub.add_parser("compare", help="baseline vs JEPA/anchor per cell over seeds, grids, A.1 statistics, "
                                             "flags, plots")
    compare.add_argument("--results", nargs="*", default=[], help="lm-eval results files or output folders")
    compare.add_argument("--run", action="append", default=[], metavar="METHOD:SEED:PATH",
                         help="label a results file/folder or a checkpoint folder (repeatable)")
    compare.add_argument("--probe", nargs="*", default=[], help="probe JSON outputs")
    compare.add_argument("--drift", nargs="*", default=[], help="drift JSON outputs")
    compare.add_argument("--baseline", default="baseline", help="method the others are compared with")
    compare.add_argument("--percent", action="store_true", help="show lm-eval metrics x 100")
    compare.add_argument("--select-on", nargs="*", default=[], metavar="RESULTS",
                         help="lm-eval results of the same runs on a held-out dev split: grids pick their best "
                              "cell by these instead of the evaluation split (which is optimistic)")
    compare.add_argument("--select-task", default=None,
                         help="task of the --select-on results to select by (needed when they hold several)")
    compare.add_argument("--out", default="compare_out", help="folder for compare.md, compare.json and PNGs")
    return parser


def run_command(args: argparse.Namespace) -> str:
    """Run one parsed subcommand; return the text to print."""
    from dllm_jepa_train.analysis.common import write_json

    if args.command == "probe":
        from dllm_jepa_train.analysis.probe import ProbeSettings, format_probe, run_probe

        settings = ProbeSettings(seed=args.seed, mask_rate=args.mask_rate, num_docs=args.num_docs,
                                 max_length=args.max_length, batch_size=args.batch_size,
                                 text_file=args.text_file, dtype=args.dtype, device=args.device,
                                 compile=args.compile)
        result = run_probe(args.base, args.finetunes, settings)
        return format_probe(result) + f"\nwrote {write_json(args.out, result)}"
    if args.command == "drift":
        from dllm_jepa_train.analysis.drift import DriftSettings, format_drift, run_drift

        settings = DriftSettings(num_samples=args.num_samples, max_length=args.max_length,
                                 batch_size=args.batch_size, text_file=args.text_file, dtype=args.dtype,
                                 device=args.device, include_embeddings=args.include_embeddings,
                                 compile=args.compile)
        result = run_drift(args.base, args.finetunes, settings)
        return format_drift(result) + f"\nwrote {write_json(args.out, result)}"
    if args.command == "collapse":
        from dllm_jepa_train.analysis.collapse import CollapseSettings, format_collapse, run_collapse

        settings = CollapseSettings(config=args.config, t_context=args.t_context, t_target=args.t_target,
                                    data=args.data, text_file=args.text_file, split=args.split, data_dir=args.data_dir,
                                    num_samples=args.num_samples, num_pairs=args.num_pairs, seed=args.seed,
                                    max_length=args.max_length, batch_size=args.batch_size, target=args.target,
                                    dtype=args.dtype, device=args.device, compile=args.compile)
        result = run_collapse(args.checkpoint, settings)
        return format_collapse(result) + f"\nwrote {write_json(args.out, result)}"
    from dllm_jepa_train.analysis.compare import run_compare

    report = run_compare(args.results, args.run, args.probe, args.drift, args.out, args.baseline, args.percent,
                         args.select_on, args.select_task)
    return report["markdown"] + f"\nwrote {args.out}/compare.md, compare.json" + (
        "".join(f", {p}" for p in report["plots"].values()))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m dllm_jepa_train.analysis` and `dllm-jepa-analysis`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        print(run_command(args))
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
