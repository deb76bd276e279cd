"""The whole DLLM-JEPA pipeline at toy scale, offline, on a CPU: the README's first command.

    bash scripts/demo.sh                           # from a fresh clone: venv, install, run
    python -m dllm_jepa_train.toy.demo                 # default size, at most 10 minutes on 2 cores
    python -m dllm_jepa_train.toy.demo --size small    # the CI-sized run, about 3 minutes
    python -m dllm_jepa_train.toy.demo --fresh         # start over instead of reusing finished stages

Stages, each the real command a user runs on real checkpoints:
  data       synthetic GSM8K / Spider / NL-RX / Django / text data in the layout of the real releases
  pretrain   a byte-level BPE tokenizer and a tiny LLaDA-like base, pre-trained on the text corpus with
             the trainer's plain-text mode (`deepspeed dllm_jepa_train/main.py ... --data.source text`)
  baseline   diffusion-only fine-tune of that base on the four tasks' training splits (jepa.lambda 0)
  jepa       the DLLM-JEPA fine-tune with the same data, seed and recipe (jepa.lambda 1)
  eval_*     `lm_eval --model llada_diffusion --tasks dllm_jepa_demo` on base, baseline and JEPA
             (the task suite's prompts, 4-shot protocol and metrics; shorter generation budgets)
  probe      held-out diffusion loss at 50% masking and per-layer drift from the base
  compare    the baseline -> JEPA table and the plots

Finished stages are recorded in <root>/stages.json and skipped on a rerun. Whatever the tiny models
score is reported as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class DemoSize:
    """Everything that differs between the default demo and the CI-sized one."""

    data_scale: float  # synthetic data size multiplier
    pretrain_epochs: int  # passes of the pre-training over text/train.txt
    finetune_rows: int  # training rows per task in the fine-tuning mixture
    finetune_epochs: int  # passes of each fine-tune
    eval_limit: int  # documents per task in each lm_eval run
    eval_steps: int  # denoising steps over the whole generation (block 32, generation 48 or 96 tokens)
    probe_docs: int  # held-out documents for the probe and drift


SIZES = {
    "default": DemoSize(data_scale=0.5, pretrain_epochs=3, finetune_rows=200, finetune_epochs=2,
                        eval_limit=20, eval_steps=48, probe_docs=100),
    "small": DemoSize(data_scale=0.1, pretrain_epochs=1, finetune_rows=24, finetune_epochs=1,
                      eval_limit=3, eval_steps=12, probe_docs=12),
}
MODELS = ("base", "baseline", "jepa")


class StageError(RuntimeError):
    """A demo stage failed; the message names the stage and where its log is."""


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DLLM_JEPA_DATA": str(root / "data"),
        # Nothing here may touch the network: fail fast instead of retrying hub requests.
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_logged(cmd: list[str], log_path: Path, env: dict[str, str], stage: str) -> None:
    """Run `cmd`, streaming its output to the terminal and to `log_path`; raise StageError on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=PROJECT_ROOT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write("    " + line)
        code = proc.wait()
    if code != 0:
        raise StageError(f"stage '{stage}' failed: `{' '.join(cmd[:3])} ...` exited with {code}; "
                         f"full log: {log_path}")


def _bin(name: str) -> str:
    """The console script `name` of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _trainer_cmd(config: str, overrides: dict[str, object]) -> list[str]:
    cmd = [_bin("deepspeed"), "--num_gpus", "1", str(PROJECT_ROOT / "dllm_jepa_train" / "main.py"),
           "--config", str(CONFIGS / config)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def stage_data(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    """Synthetic task data, then the fine-tuning mixture in the generic JSONL format."""
    from dllm_jepa_train.toy.synthetic import generate_all
    from lm_eval_diffusion.prompts import training_pair
    from lm_eval_diffusion.task_data import TASKS, load_docs

    counts = generate_all(root / "data", seed=0, scale=size.data_scale)
    print(f"    wrote {sum(counts.values())} records in {len(counts)} files under {root / 'data'}")
    rows = []
    for task in TASKS:
        docs = load_docs(task, "train", data_dir=root / "data")[: size.finetune_rows]
        for doc in docs:
            prompt, response = training_pair(task, doc)
            rows.append({"prompt": prompt, "response": response, "task": task})
    path = root / "data" / "finetune.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"    fine-tuning mixture: {len(rows)} rows ({size.finetune_rows} per task) -> {path}")


def stage_pretrain(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    run_logged(_trainer_cmd("demo_pretrain.yaml", {
        "data.path": root / "data" / "text" / "train.txt",
        "optim.epochs": size.pretrain_epochs,
        "run.output_dir": root / "base",
    }), root / "logs" / "pretrain.log", env, "pretrain")


def _finetune(method: str) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        run_logged(_trainer_cmd(f"demo_{method}.yaml", {
            "model.pretrained": root / "base" / "final",
            "data.path": root / "data" / "finetune.jsonl",
            "optim.epochs": size.finetune_epochs,
            "run.output_dir": root / method,
        }), root / "logs" / f"{method}.log", env, method)
    return stage


def checkpoint_of(root: Path, model: str) -> Path:
    """The HF checkpoint directory of `model` (base | baseline | jepa)."""
    return root / model / "final"


def _evaluate(model: str) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        out = root / "eval" / model
        shutil.rmtree(out, ignore_errors=True)
        model_args = (f"pretrained={checkpoint_of(root, model)},steps={size.eval_steps},"
                      f"block_length=32,dtype=float32")
        run_logged([_bin("lm_eval"), "--model", "llada_diffusion", "--model_args", model_args,
                    "--tasks", "dllm_jepa_demo", "--limit", str(size.eval_limit), "--batch_size", "8",
                    "--device", "cpu", "--output_path", str(out), "--log_samples",
                    "--metadata", json.dumps({"data_dir": str(root / "data")})],
                   root / "logs" / f"eval_{model}.log", env, f"eval_{model}")
    return stage


def stage_probe(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    analysis = [sys.executable, "-m", "dllm_jepa_train.analysis"]
    common = ["--base", str(checkpoint_of(root, "base")), "--finetunes",
              str(checkpoint_of(root, "jepa")), str(checkpoint_of(root, "baseline")),
              "--text-file", str(root / "data" / "text" / "valid.txt"), "--device", "cpu"]
    run_logged(analysis + ["probe", *common, "--num-docs", str(size.probe_docs),
                           "--out", str(root / "analysis" / "probe.json")],
               root / "logs" / "probe.log", env, "probe")
    run_logged(analysis + ["drift", *common, "--num-samples", str(size.probe_docs),
                           "--out", str(root / "analysis" / "drift.json")],
               root / "logs" / "drift.log", env, "probe")


def stage_compare(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    seed = 42
    cmd = [sys.executable, "-m", "dllm_jepa_train.analysis", "compare",
           "--run", f"baseline:{seed}:{root / 'eval' / 'baseline'}",
           "--run", f"jepa:{seed}:{root / 'eval' / 'jepa'}",
           "--probe", str(root / "analysis" / "probe.json"),
           "--drift", str(root / "analysis" / "drift.json"),
           "--out", str(root / "compare")]
    run_logged(cmd, root / "logs" / "compare.log", env, "compare")


STAGES: list[tuple[str, Callable[[Path, DemoSize, dict[str, str]], None]]] = [
    ("data", stage_data),
    ("pretrain", stage_pretrain),
    ("baseline", _finetune("baseline")),
    ("jepa", _finetune("jepa")),
    *[(f"eval_{m}", _evaluate(m)) for m in MODELS],
    ("probe", stage_probe),
    ("compare", stage_compare),
]


def _load_state(path: Path, size_name: str) -> dict:
    if not path.exists():
        return {"size": size_name, "done": {}}
    state = json.loads(path.read_text())
    if state.get("size") != size_name:
        raise StageError(f"{path.parent} holds a '{state.get('size')}' demo; rerun with --size "
                         f"{state.get('size')}, another --root, or --fresh")
    return state


def run_demo(root: Path, size_name: str = "default", fresh: bool = False) -> dict[str, float]:
    """Run every stage not yet finished under `root`; return {stage: seconds} of this and earlier runs."""
    if size_name not in SIZES:
        raise StageError(f"--size must be one of {', '.join(SIZES)}; got {size_name!r}")
    size = SIZES[size_name]
    root = root.resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / "stages.json"
    state = _load_state(state_path, size_name)
    env = _env(root)
    for index, (name, stage) in enumerate(STAGES, start=1):
        header = f"[{index}/{len(STAGES)}] {name}"
        if name in state["done"]:
            print(f"{header}: done in an earlier run ({state['done'][name]:.1f} s), reused")
            continue
        print(f"{header} ...", flush=True)
        start = time.perf_counter()
        try:
            stage(root, size, env)
        except StageError:
            raise
        except Exception as err:  # a stage run in-process: name it, keep the cause
            raise StageError(f"stage '{name}' failed: {type(err).__name__}: {err}") from err
        state["done"][name] = time.perf_counter() - start
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(state_path)  # atomic: a crash never leaves a half-written record
        print(f"{header}: finished in {state['done'][name]:.1f} s", flush=True)
    return state["done"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="demo_runs", help="where every stage writes (default demo_runs/)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES), help="default or small (CI)")
    parser.add_argument("--fresh", action="store_true", help="delete --root first and run every stage")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    try:
        timings = run_demo(Path(args.root), args.size, args.fresh)
    except StageError as err:
        print(f"\ndemo failed: {err}", file=sys.stderr)
        return 1
    root = Path(args.root)
    table = root / "compare" / "compare.md"
    if table.exists():
        print("\n" + table.read_text())
    print("Stage times (seconds):")
    for name, seconds in timings.items():
        print(f"  {name:<14} {seconds:8.1f}")
    print(f"  {'total':<14} {sum(timings.values()):8.1f}   (this invocation: {time.perf_counter() - wall:.1f})")
    print(f"\nOutputs: {root}/compare (table, plots), {root}/eval (lm-eval results), {root}/logs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
