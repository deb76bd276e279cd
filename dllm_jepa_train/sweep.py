"""Grids and ablations as files a cluster's own job system runs: resolved configs, launch.sh, eval.sh.

    python -m dllm_jepa_train.sweep --config dllm_jepa_train/configs/gsm8k_jepa.yaml \
        --grid jepa.lambda=0.5,1,2 --grid jepa.predictor_depth=1,2,3,4,5 --seeds 42,123,777 \
        --eval-tasks gsm8k_dllm_0shot --out sweeps/table7            # Table 7: 15 cells + 1 baseline, x 3 seeds

Smallest CPU run (prints the 2 x 2 grid's 4 JEPA runs and its baseline; writes nothing):

    python -m dllm_jepa_train.sweep --config dllm_jepa_train/configs/tiny_jepa.yaml \
        --grid jepa.lambda=0.5,1 --grid jepa.predictor_depth=1,2 --seeds 42 --out /tmp/sweep --dry-run

Axes: every `--grid KEY=V1,V2,...` is crossed with the others; a `--pair K1,K2=A1:B1,A2:B2,...` moves
its keys together (Table 9's (t_L, t_H) pairs). Values parse as YAML ("1e-5", "true", "0"); a value
that holds a comma or colon cannot be written on these axes. Every run is a config resolved through
`dllm_jepa_train.config` (validated: an unknown key or a bad value fails before anything is written)
and written to <out>/configs/<run>.yaml with run.output_dir <out>/runs/<run> and run.seed set.

The diffusion-only baseline (jepa.lambda 0) is added once per seed and per setting of the non-jepa
axes (a baseline does not depend on lambda, k or t_H; it does on t_L), not once per k;
`--no-baseline` leaves it out. Cells whose lambda is 0 are baselines and are deduplicated the same way.

<out>/launch.sh: one `deepspeed [--hostfile F] [--num_gpus N] main.py --config <run>.yaml` line per run.
<out>/eval.sh: one `accelerate launch -m lm_eval --model llada_diffusion ...` line per run with the
table's protocol (`--eval-tasks`, `--num-fewshot`; Table 7 is 0-shot: gsm8k_dllm_0shot; Table 9 and
Figure 3 are seed 42 only, 4-shot and 0-shot: `--seeds 42 --eval-tasks gsm8k_dllm,gsm8k_dllm_0shot`),
results in <out>/eval/<run>. Then `python -m dllm_jepa_train.analysis compare --results <out>/eval --out <out>/report`
prints the grid. With `--set data.dev_rows=N` (GSM8K: a seeded slice of train held out of training)
<out>/eval_dev.sh scores each run on that slice, and `compare ... --select-on <out>/eval_dev` picks the
best cell on it instead of on the evaluation split. <out>/sweep.json lists the runs.

With `--scheduler slurm --num-gpus N` (N GPUs per node) it also writes the stages as Slurm job arrays,
task i = run i of sweep.json: <out>/train.sbatch, <out>/eval.sbatch (<out>/eval_dev.sbatch), and
<out>/submit.sh, which submits the unfinished ones (evaluations after their training task, aftercorr) and
is run again after a time-out or a failure; logs in <out>/logs/. Nothing is submitted here
(dllm_jepa_train/slurm.py writes the text).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dllm_jepa_train import plugins, slurm
from dllm_jepa_train.config import ConfigError, TrainConfig, load_config, save_config
from lm_eval_diffusion import task_registry

MAIN = Path(__file__).resolve().parent / "main.py"


def default_eval_task(source: str) -> str | None:
    """The lm-eval task a training source is scored with by default (the paper's protocol: its registered
    task's first `eval_tasks` entry, gsm8k -> gsm8k_dllm); None for a source that is no registered task."""
    if source not in task_registry.task_names():
        return None
    return next(iter(task_registry.get_task(source).eval_tasks), None)


@dataclass
class Run:
    """One run of the sweep: its name, the axis values it sets, its seed and resolved config."""

    name: str
    values: dict[str, Any]
    seed: int
    cfg: TrainConfig
    is_baseline: bool


def _parse_value(raw: str, key: str) -> Any:
    if raw.strip() == "":
        raise ConfigError(f"{key}: empty value in the sweep axis")
    return yaml.safe_load(raw)


def parse_grid(text: str) -> tuple[list[str], list[tuple]]:
    """'KEY=V1,V2' -> ([KEY], [(V1,), (V2,)]); ConfigError when malformed."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or "." not in key:
        raise ConfigError(f"--grid {text!r}: expected section.key=v1,v2,...")
    return [key.strip()], [(_parse_value(v, key),) for v in raw.split(",")]


def parse_pair(text: str) -> tuple[list[str], list[tuple]]:
    """'K1,K2=A1:B1,A2:B2' -> ([K1, K2], [(A1, B1), (A2, B2)]); ConfigError when malformed."""
    keys_text, sep, raw = text.partition("=")
    keys = [k.strip() for k in keys_text.split(",")]
    if not sep or len(keys) < 2 or not all("." in k for k in keys):
        raise ConfigError(f"--pair {text!r}: expected section.k1,section.k2=a1:b1,a2:b2,...")
    values = []
    for item in raw.split(","):
        parts = item.split(":")
        if len(parts) != len(keys):
            raise ConfigError(f"--pair {text!r}: {item!r} has {len(parts)} values for {len(keys)} keys")
        values.append(tuple(_parse_value(p, k) for p, k in zip(parts, keys)))
    return keys, values


def _override_args(values: dict[str, Any]) -> list[str]:
    return [arg for key, value in values.items() for arg in (f"--{key}", json.dumps(value))]


def _token(key: str, value: Any) -> str:
    text = f"{key.rsplit('.', 1)[-1]}{value}"
    return re.sub(r"[^A-Za-z0-9.=+-]+", "-", text).strip("-")


def run_name(stem: str, values: dict[str, Any], seed: int, is_baseline: bool) -> str:
    """<config stem>__<axis values>_s<seed>; baselines are named 'baseline' plus their non-jepa values."""
    shown = {k: v for k, v in values.items() if not (is_baseline and k.startswith("jepa."))}
    parts = (["baseline"] if is_baseline else []) + [_token(k, v) for k, v in shown.items()]
    return f"{stem}__{'_'.join(parts) or 'base'}_s{seed}"


def expand(configs: list[str], axes: list[tuple[list[str], list[tuple]]], seeds: list[int], out: Path,
           sets: list[str], add_baseline: bool) -> list[Run]:
    """Every run of the sweep, each config resolved and validated; ConfigError before anything is written."""
    if not configs:
        raise ConfigError("--config is required")
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    keys = [k for axis_keys, _ in axes for k in axis_keys]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ConfigError(f"sweep keys {duplicated} appear on more than one axis")
    for key in ("run.seed", "run.output_dir"):
        if key in keys:
            raise ConfigError(f"{key} is set by the sweep (--seeds, --out), not an axis")
    stem = Path(configs[0]).stem
    base_overrides = [arg for item in sets for arg in _set_arg(item)]
    cells = [dict(zip([k for axis_keys, _ in axes for k in axis_keys], [v for combo in choice for v in combo]))
             for choice in itertools.product(*[values for _, values in axes])] if axes else [{}]
    runs: list[Run] = []
    seen: set[str] = set()
    for seed in seeds:
        planned: list[tuple[dict[str, Any], bool]] = []
        for values in cells:
            cfg = _resolve(configs, base_overrides, values, seed, out / "runs" / "_")
            planned.append((values, cfg.jepa.lambda_ == 0))
            if add_baseline and cfg.jepa.lambda_ > 0:
                planned.append(({**{k: v for k, v in values.items() if not k.startswith("jepa.")}, "jepa.lambda": 0},
                                True))
        for values, is_baseline in sorted(planned, key=lambda p: not p[1]):  # baselines first: JEPA cells compare to them
            name = run_name(stem, values, seed, is_baseline)
            if name in seen:
                continue  # a baseline is shared by every cell with the same non-jepa values
            seen.add(name)
            cfg = _resolve(configs, base_overrides, values, seed, out / "runs" / name)
            runs.append(Run(name, values, seed, cfg, is_baseline))
    return runs


def _set_arg(item: str) -> list[str]:
    key, sep, raw = item.partition("=")
    if not sep:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    return [f"--{key.strip()}", raw]


def _resolve(configs: list[str], base: list[str], values: dict[str, Any], seed: int, output_dir: Path) -> TrainConfig:
    overrides = base + _override_args(values) + ["--run.seed", str(seed), "--run.output_dir", str(output_dir)]
    try:
        return load_config(configs, overrides)
    except ConfigError as err:
        raise ConfigError(f"sweep cell {values or '(no axes)'} seed {seed}: {err}") from None


def launch_line(config_path: Path, num_gpus: int | None, hostfile: str | None, launcher_args: str) -> str:
    """One `deepspeed` command training the run whose resolved config is at `config_path`."""
    parts = ["deepspeed"]
    parts += ["--hostfile", shlex.quote(hostfile)] if hostfile else []
    parts += ["--num_gpus", str(num_gpus)] if num_gpus else []
    parts += shlex.split(launcher_args)
    return " ".join(parts + [shlex.quote(str(MAIN)), "--config", shlex.quote(str(config_path))])


def eval_line(run: Run, out: Path, tasks: str, num_fewshot: int | None, model_args: str, eval_args: str,
              eval_launcher: str, dev: bool = False) -> str:
    """One lm-eval command scoring the run's exported checkpoint with the table's protocol; `dev`: on the
    run's held-out dev slice (data.dev_rows) instead, results in <out>/eval_dev."""
    run_dir = Path(run.cfg.run.output_dir)
    args = f"pretrained={run_dir / 'final'}" + (f",{model_args}" if model_args else "")
    parts = shlex.split(eval_launcher) + ["-m", "lm_eval", "--model", "llada_diffusion", "--model_args", args,
                                          "--tasks", tasks]
    parts += ["--num_fewshot", str(num_fewshot)] if num_fewshot is not None else []
    parts += shlex.split(eval_args)
    if dev:
        parts += ["--metadata", json.dumps({"data_dir": str(run_dir / "dev_data")})]
    parts += ["--output_path", str(out / ("eval_dev" if dev else "eval") / run.name)]
    return " ".join(shlex.quote(p) for p in parts)


def _script(header: str, lines: list[str]) -> str:
    return "#!/usr/bin/env bash\n" + header + "set -euo pipefail\n" + "".join(line + "\n" for line in lines)


def slurm_options(args: argparse.Namespace, out: Path) -> slurm.SlurmOptions | None:
    """The validated --slurm-* options under --scheduler slurm, else None; ConfigError naming the bad flag."""
    defaults = build_parser()
    given = [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
             if k.startswith("slurm_") and v != defaults.get_default(k)]
    if args.scheduler != "slurm":
        if given:
            raise ConfigError(f"{', '.join(given)} need --scheduler slurm")
        return None
    if args.num_gpus is None:
        raise ConfigError("--scheduler slurm needs --num-gpus (GPUs per node)")
    if args.hostfile:
        raise ConfigError("--hostfile: not with --scheduler slurm (a task writes its own from $SLURM_JOB_NODELIST)")
    slurm.check_out_path(str(out))
    opts = slurm.SlurmOptions(job_name=args.slurm_job_name or slurm.safe_job_name(out.name),
                              gpus_per_node=args.num_gpus, nodes=args.slurm_nodes, eval_gpus=args.slurm_eval_gpus,
                              time=args.slurm_time, eval_time=args.slurm_eval_time,
                              cpus_per_task=args.slurm_cpus_per_task, mem=args.slurm_mem,
                              eval_cpus_per_task=args.slurm_eval_cpus_per_task, eval_mem=args.slurm_eval_mem,
                              partition=args.slurm_partition, sbatch_lines=args.slurm_sbatch,
                              max_parallel=args.slurm_max_parallel)
    opts.validate()
    extra = [slurm.directive(line) for line in opts.sbatch_lines]
    missing = [flag for flag, value, prefix in (("--slurm-cpus-per-task", opts.cpus_per_task, "--cpus-per"),
                                                ("--slurm-mem", opts.mem, "--mem"))
               if value is None and not any(d.startswith(prefix) for d in extra)]
    if missing:  # a warning, not an error: many clusters set DefCpuPerGPU / DefMemPerGPU
        print(f"note: no {' / '.join(missing)}: a task gets the cluster's default, typically 1 CPU and "
              "DefMemPerCPU for it where DefCpuPerGPU / DefMemPerGPU are unset (see docs/training.md, Slurm)",
              file=sys.stderr)
    return opts


def write_slurm(opts: slurm.SlurmOptions, runs: list[Run], out: Path, written_by: str, args: argparse.Namespace,
                tasks: str) -> list[str]:
    """Write the sbatch scripts and submit.sh into `out`; return their names."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)  # Slurm does not create the --output folder: a task would fail unlogged
    commands = [slurm.train_command(str(MAIN), str(out / "configs" / f"{r.name}.yaml"), args.launcher_args,
                                    opts.nodes) for r in runs]
    (out / "train.sbatch").write_text(slurm.train_script(opts, written_by, str(logs), commands))
    stages: dict[str, dict[int, str]] = {}
    for stage, dev in (("eval", False), ("eval_dev", True)):
        chosen = {i: r for i, r in enumerate(runs) if not dev or r.cfg.data.dev_rows}
        if not chosen:
            continue
        lines = {i: eval_line(r, out, tasks, args.num_fewshot, args.model_args, args.eval_args, args.eval_launcher,
                              dev=dev) for i, r in chosen.items()}
        (out / f"{stage}.sbatch").write_text(slurm.eval_script(opts, written_by, str(logs), stage, lines))
        stages[stage] = {i: str(out / stage / r.name) for i, r in chosen.items()}
    run_dirs = [r.cfg.run.output_dir for r in runs]
    (out / "submit.sh").write_text(slurm.submit_script(opts, written_by, str(out), str(logs), run_dirs, stages))
    return ["train.sbatch", *[f"{stage}.sbatch" for stage in stages], "submit.sh"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dllm_jepa_train.sweep", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], required=True,
                        help="base config YAML (repeat to layer an override set, e.g. configs/dream7b.yaml)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a crossed axis, e.g. jepa.lambda=0.5,1,2 (repeatable)")
    parser.add_argument("--pair", action="append", default=[], metavar="K1,K2=A1:B1,A2:B2",
                        help="keys moved together, e.g. diffusion.t_context,jepa.t_target=0.1:0.5,0.2:0.7")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fixed override for every run, e.g. optim.max_steps=100 (repeatable)")
    parser.add_argument("--seeds", default="42,123,777", help="comma-separated seeds (paper: 42,123,777)")
    parser.add_argument("--out", required=True, help="folder for configs/, runs/, eval/, launch.sh, eval.sh")
    parser.add_argument("--no-baseline", action="store_true", help="do not add the lambda = 0 baseline")
    parser.add_argument("--num-gpus", type=int, default=None,
                        help="passed to deepspeed as --num_gpus; with --scheduler slurm: GPUs per node (required)")
    parser.add_argument("--hostfile", default=None,
                        help="passed to deepspeed as --hostfile (not with --scheduler slurm: a task writes its own)")
    parser.add_argument("--launcher-args", default="", help="more deepspeed launcher arguments, e.g. '--master_port 29501'")
    parser.add_argument("--eval-tasks", default=None,
                        help="lm-eval tasks (default: the task of data.source, e.g. gsm8k_dllm); Table 7: "
                             "gsm8k_dllm_0shot; Table 9 and Figure 3: gsm8k_dllm,gsm8k_dllm_0shot")
    parser.add_argument("--num-fewshot", type=int, default=None, help="lm-eval --num_fewshot (default: the task's own)")
    parser.add_argument("--model-args", default="", help="more llada_diffusion model_args, e.g. 'steps=128,batch_size=8'")
    parser.add_argument("--eval-args", default="--batch_size 8",
                        help="more lm_eval arguments, e.g. \"--batch_size 8 --metadata '{\\\"data_dir\\\": \\\"/data\\\"}'\"")
    parser.add_argument("--eval-launcher", default="accelerate launch",
                        help="what runs `-m lm_eval` (default: accelerate launch; e.g. 'accelerate launch --num_processes 8')")
    parser.add_argument("--scheduler", choices=("none", "slurm"), default="none",
                        help="slurm: also write train.sbatch / eval.sbatch (job arrays, task i = run i of sweep.json) "
                             "and submit.sh, which submits the unfinished ones; nothing is submitted here")
    parser.add_argument("--slurm-nodes", type=int, default=1,
                        help="nodes per training task (> 1: a deepspeed hostfile from $SLURM_JOB_NODELIST)")
    parser.add_argument("--slurm-time", default=None, help="a training task's --time, e.g. 2-00:00:00")
    parser.add_argument("--slurm-eval-time", default=None, help="an evaluation task's --time (default: --slurm-time)")
    parser.add_argument("--slurm-cpus-per-task", type=int, default=None,
                        help="a training task's --cpus-per-task, for all ranks of a node (default: the cluster's)")
    parser.add_argument("--slurm-mem", default=None,
                        help="a training task's --mem per node, e.g. 500G; 0: all of it (default: the cluster's)")
    parser.add_argument("--slurm-eval-cpus-per-task", type=int, default=None,
                        help="an evaluation task's --cpus-per-task (default: --slurm-cpus-per-task)")
    parser.add_argument("--slurm-eval-mem", default=None, help="an evaluation task's --mem (default: --slurm-mem)")
    parser.add_argument("--slurm-partition", default=None, help="--partition of every array")
    parser.add_argument("--slurm-eval-gpus", type=int, default=None,
                        help="GPUs of an evaluation task, one node (default: --num-gpus)")
    parser.add_argument("--slurm-sbatch", action="append", default=[], metavar="OPTION",
                        help="an extra #SBATCH line for every array, e.g. --slurm-sbatch=--account=abc (repeatable)")
    parser.add_argument("--slurm-max-parallel", type=int, default=None,
                        help="at most this many tasks of an array at once (--array=...%%K)")
    parser.add_argument("--slurm-job-name", default=None,
                        help="array jobs are NAME-train, NAME-eval, NAME-eval_dev (default: the --out folder's name, "
                             "other characters than letters, digits and ._+- as _)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs' commands; write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace the scripts of an earlier sweep in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: expand, validate, then write (or print) configs and scripts."""
    args = build_parser().parse_args(argv)
    out = Path(args.out).resolve()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds {args.seeds!r}: expected comma-separated integers", file=sys.stderr)
        return 2
    try:
        axes = [parse_grid(g) for g in args.grid] + [parse_pair(p) for p in args.pair]
        runs = expand(args.config, axes, seeds, out, args.set, not args.no_baseline)
        # A plug-in source (toy:<task>) evaluates with the lm-eval task of the source it is read as
        # (point DLLM_JEPA_DATA at the run's data folder).
        sources = {plugins.data_source(r.cfg.data.source) for r in runs}
        tasks = args.eval_tasks or ",".join(sorted({t for t in map(default_eval_task, sources) if t}))
        if not tasks:
            raise ConfigError(f"--eval-tasks: no default lm-eval task for data.source {sorted(sources)}; name one")
        slurm_opts = slurm_options(args, out)
        if (out / "launch.sh").exists() and not args.overwrite and not args.dry_run:
            raise ConfigError(f"{out} already holds a sweep (launch.sh); pass --overwrite or another --out")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    config_paths = {r.name: out / "configs" / f"{r.name}.yaml" for r in runs}
    launches = [launch_line(config_paths[r.name], args.num_gpus, args.hostfile, args.launcher_args) for r in runs]
    evals = [eval_line(r, out, tasks, args.num_fewshot, args.model_args, args.eval_args, args.eval_launcher)
             for r in runs]
    num_baselines = sum(r.is_baseline for r in runs)
    summary = (f"{len(runs)} runs ({len(runs) - num_baselines} JEPA/ablation, {num_baselines} baseline) over "
               f"seeds {','.join(map(str, seeds))}")
    dev_runs = [r for r in runs if r.cfg.data.dev_rows]
    if args.dry_run:
        print(f"# {summary}\n# launch\n" + "\n".join(launches) + "\n# eval\n" + "\n".join(evals))
        if slurm_opts:
            print(f"# slurm: train.sbatch and eval.sbatch, arrays 0-{len(runs) - 1}"
                  + (", eval_dev.sbatch" if dev_runs else "") + ", submit.sh")
        return 0
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for run in runs:
        save_config(run.cfg, config_paths[run.name])
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "dllm_jepa_train.sweep", *(argv or sys.argv[1:])])
    header = f"# written by: {command}\n# {summary}; each line is one job, in any order\n"
    (out / "launch.sh").write_text(_script(header, launches))
    (out / "eval.sh").write_text(_script(header.replace("in any order", "after its training run"), evals))
    scripts = ["launch.sh", "eval.sh"]
    if dev_runs:  # grid cells chosen on the held-out slice: compare --select-on <out>/eval_dev
        dev_evals = [eval_line(r, out, tasks, args.num_fewshot, args.model_args, args.eval_args, args.eval_launcher,
                               dev=True) for r in dev_runs]
        (out / "eval_dev.sh").write_text(_script(header.replace("in any order", "after its training run"), dev_evals))
        scripts.append("eval_dev.sh")
    if slurm_opts:
        scripts += write_slurm(slurm_opts, runs, out, header.splitlines()[0], args, tasks)
    for name in ("eval_dev.sh", *slurm.SCRIPT_NAMES):  # an earlier sweep's (--overwrite) would mislead
        if name not in scripts:
            (out / name).unlink(missing_ok=True)
    for name in scripts:
        (out / name).chmod(0o755)
    manifest = [{"name": r.name, "seed": r.seed, "values": r.values, "baseline": r.is_baseline,
                 "config": str(config_paths[r.name]), "output_dir": r.cfg.run.output_dir} for r in runs]
    (out / "sweep.json").write_text(json.dumps({"command": command, "runs": manifest}, indent=2) + "\n")
    print(f"{summary}\nwrote {out}/configs/ ({len(runs)} configs), {out}/launch.sh, {out}/eval.sh, {out}/sweep.json"
          + (f"; Slurm arrays: {', '.join(s for s in scripts if s.endswith('.sbatch'))}, submit with "
             f"bash {out}/submit.sh" if slurm_opts else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
