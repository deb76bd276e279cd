"""The whole DLLM-JEPA pipeline at toy scale, offline, on a CPU: the README's first command.

    bash scripts/demo.sh                               # from a fresh clone: venv, install, run
    python -m dllm_jepa_train.toy.demo                 # default size, at most 10 minutes on 2 cores
    python -m dllm_jepa_train.toy.demo --seeds 3       # three fine-tunes per method: mean ± std, paired deltas
    python -m dllm_jepa_train.toy.demo --size small    # the CI-sized run, a few minutes
    python -m dllm_jepa_train.toy.demo --fresh         # start over instead of reusing finished stages
    python -m dllm_jepa_train.toy.demo --lora          # both fine-tunes train LoRA adapters (demo_runs_lora/)

Stages, each the real command a user runs on real checkpoints:
  data         synthetic GSM8K / Spider / NL-RX / Django / text data in the layout of the real releases
               (`dllm_jepa_train.toy.synthetic`), and the fine-tuning mixture of the four training splits
  pretrain     a byte-level BPE tokenizer and a tiny LLaDA-like base, pre-trained on the text corpus with
               the trainer's plain-text mode (`deepspeed dllm_jepa_train/main.py ... --data.source text`)
  baseline_sN  diffusion-only fine-tune of that base on the mixture (jepa.lambda 0), run seed N
  jepa_sN      the DLLM-JEPA fine-tune with the same data, seed and recipe (jepa.lambda 1)
  eval_*       `lm_eval --model llada_diffusion --tasks dllm_jepa_demo` on the base and every fine-tune
  probe_*      held-out diffusion loss at 50% masking and per-layer drift from the base
  compare_*    the analysis `compare` command: its per-metric table and the plots
  summary_*    the table a newcomer reads (`dllm_jepa_train.toy.report`): base -> baseline -> JEPA per
               task, probe and drift rows, and what they show in words

What was chosen to give the toy models a chance to learn, and why (measured on a 2-core CPU):
- Data (`toy.synthetic`): a few templates per task whose slots each take a value from a short closed
  list of its own kind: GSM8K one-step problems over small numbers, one operand a digit and the other
  a number word ("a op b = c", "#### c", 61 arithmetic facts); NL-RX lines with one operator over a
  character class and/or one of twelve strings; Django lines with one variable (of sixteen),
  function, module, exception or digit; single-table Spider counts, aggregates and text-value
  filters. A tiny diffusion model finds a slot value in the question by what it is in a few hundred
  steps; copying by position alone or from an open vocabulary took thousands of steps in our trials,
  more than a CPU demo has. A test item is a new combination of parts the training split has seen:
  no Spider or Django template gives more than half of its distinct lines to the held-out items, so
  every template keeps most of its slot values for training (uncapped, the held-out items used up
  the small templates, and the model memorised the few lines training still showed). Test
  items never appear verbatim in any training data: held-out items are chosen first and unique,
  training and corpus draws skip them (checked in tests/unit/test_synthetic.py).
- Pre-training: the corpus mixes task pairs written as the prompts put them, newlines as spaces
  ("Question: ... Answer: 3 + 4 = 7 #### 7", "Description: ... Regex: ...", with training items but
  never a held-out one) with general sentences, so the base knows the tasks' kind of text and can do a
  little, and the probe measures forgetting of something real. The base is trained once and shared
  by both fine-tunes, so its minutes buy more learning than a fine-tune's.
- Model: LLaDA-like, 4 layers, width 128, 1,024-token BPE vocabulary (toy/configs/demo_pretrain.yaml).
- Fine-tuning: baseline and JEPA share every setting except jepa.lambda (toy/configs/demo_*.yaml).
  Context masking t ~ U(0.05, 1) per row (eq. 2's t ~ U(0, 1)) for both, instead of the paper's fixed
  t_L = 0.2: evaluation starts from a fully masked answer, which a model trained only at 20% masking
  has never seen. The JEPA target view keeps t_H = 0.7. Each response is trained on the evaluation's
  answer canvas: the answer, then EOS up to the task's canvas length; the padding of a mixed batch is
  real padding (`data.use_attention_mask`), and rows of similar length share a batch
  (`data.group_by_length`: Spider's schema prompts are three times the other rows). Micro-batches of 8
  rows: twice the updates of 16 for about a quarter more time per epoch, which this model turns into
  more learning per second (measured). The mixture reads each task's rows its mixture passes times per
  epoch (Django's 3.5 times: its short lines and slow name copying; see toy.inputs.TOY_TASKS, which the
  toy plug-in attaches to the task registry with each task's answer canvas). The
  trainer runs with `run.engine torch` under the same `deepspeed` launcher: one CPU process, where
  ZeRO partitions nothing and its hooks cost about a fifth of each step (measured); the objectives
  and the loop are the same, and the DeepSpeed engine is covered by the tests.
- Evaluation (tasks/demo/): the real tasks' prompts and metrics, zero-shot (the fine-tunes learn exactly
  the zero-shot prompt), raw generations (`until: []` outside GSM8K; the metrics clean), a 16-token
  answer canvas (32 for Spider's longer queries), 16 denoising steps in blocks of 16, at most 60 test
  docs per task.
Nothing here is tuned to make either method win; whatever the two score is reported as it is, and
the summary's closing lines say what a run shows. Measured (2-core CPU, seed 42, base -> baseline /
JEPA): GSM8K 0.00 -> 0.80 / 0.38 and Django 0.00 -> 0.77 / 0.50 exact match on the machine it was
tuned on, 0.60 / 0.55 and 0.40 / 0.25 on another (AVX2; the same code gives the same pre-training there
step for step, so the gap is the float order); Spider and NL-RX stay at
about 0 (the answers have the right shape, the slot values are wrong). Across the variants tried on
the way here the two methods' scores moved by 0.1 to 0.4 from one data draw to the next, in either
direction: one seed says nothing about which method is better (`--seeds 3`).

Finished stages are recorded in <root>/stages.json and skipped on a rerun; adding seeds reuses the
runs of the earlier seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from dllm_jepa_train.config import LoraConfig
from dllm_jepa_train.toy import toy_name
from dllm_jepa_train.toy.report import build_summary

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # dllm_jepa_train/
PROJECT_ROOT = PACKAGE_DIR.parent
CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class DemoSize:
    """Everything that differs between the default demo and the CI-sized one."""

    data_scale: float  # synthetic data size multiplier
    pretrain_epochs: int  # passes of the pre-training over text/train.txt
    finetune_rows: int  # training rows taken per task, then read its mixture passes per epoch (toy.inputs)
    finetune_epochs: int  # passes of each fine-tune
    eval_limit: int  # documents per task in each lm_eval run
    eval_steps: int  # denoising steps over the whole generation (blocks of 16; canvas 16, Spider 32 tokens)
    probe_docs: int  # held-out documents for the probe and drift


SIZES = {
    "default": DemoSize(data_scale=0.5, pretrain_epochs=3, finetune_rows=1000, finetune_epochs=8,
                        eval_limit=60, eval_steps=16, probe_docs=50),
    "small": DemoSize(data_scale=0.1, pretrain_epochs=1, finetune_rows=24, finetune_epochs=1,
                      eval_limit=3, eval_steps=8, probe_docs=12),
}
METHODS = ("baseline", "jepa")  # the two fine-tunes; the base is evaluated once
# --lora: both fine-tunes train adapters (section lora; our extension, the paper fine-tunes every weight) with
# these overrides and otherwise the same recipe; the rank is the trainer's default.
LORA_OVERRIDES = {"lora.enabled": "true"}


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


def _free_port() -> int:
    """A local TCP port nobody listens on now: deepspeed's default 29500 may be taken by another run."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _trainer_cmd(config: str, overrides: dict[str, object]) -> list[str]:
    cmd = [_bin("deepspeed"), "--num_gpus", "1", "--master_port", str(_free_port()), str(PACKAGE_DIR / "main.py"),
           "--config", str(CONFIGS / config)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def stage_data(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    """Synthetic task data and the text corpus, in the layout of the real releases."""
    from dllm_jepa_train.toy.synthetic import generate_all

    counts = generate_all(root / "data", seed=0, scale=size.data_scale)
    print(f"    wrote {sum(counts.values())} records in {len(counts)} files under {root / 'data'}")


# Denoising block of the demo evaluation: every canvas is a whole number of blocks.
BLOCK_LENGTH = 16


def toy_task_defaults() -> dict:
    """{task: toy.inputs.ToyTask (answer canvas, mixture passes)} of every task the toy plug-in attached to the
    task registry when its entry point loaded."""
    from dllm_jepa_train import plugins
    from dllm_jepa_train.toy.inputs import TASK_KEY
    from lm_eval_diffusion import task_registry

    plugins.load_plugins()
    return {task: task_registry.extra(task, TASK_KEY) for task in task_registry.tasks_with(TASK_KEY)}


def mixture_rows(rows: list, passes: float) -> list:
    """`rows` read `passes` times: whole passes in order, then the first part of the rows for the rest."""
    if passes <= 0:
        raise ValueError(f"passes must be > 0, got {passes}")
    count = max(1, round(len(rows) * passes)) if rows else 0
    return (rows * (count // max(len(rows), 1) + 1))[:count]


def canvas_response(response: str, tokenizer, canvas: int) -> str | None:
    """`response` and then EOS tokens up to `canvas` tokens in all, less the one EOS the trainer appends;
    None when the response alone does not fit. Evaluation fills exactly such a canvas: the answer, then
    EOS to its end; the trainer, with real padding (`data.use_attention_mask`), scores nothing beyond it."""
    num_tokens = len(tokenizer(response, add_special_tokens=False)["input_ids"])
    if num_tokens + 1 > canvas:
        return None
    return response + tokenizer.eos_token * (canvas - num_tokens - 1)


def stage_finetune_data(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    """The fine-tuning mixture: zero-shot prompt and canvas-filled response per training doc, as JSONL."""
    from transformers import AutoTokenizer

    from lm_eval_diffusion.prompts import training_pair
    from lm_eval_diffusion.task_data import load_docs

    tokenizer = AutoTokenizer.from_pretrained(checkpoint_of(root, "base"))
    defaults = toy_task_defaults()
    passes = {task: facts.mixture_passes for task, facts in defaults.items()}
    rows, dropped, counts = [], 0, {}
    for task, facts in defaults.items():
        task_rows = []
        for doc in load_docs(task, "train", data_dir=root / "data")[: size.finetune_rows]:
            prompt, response = training_pair(task, doc)
            filled = canvas_response(response, tokenizer, facts.canvas)
            if filled is None:
                dropped += 1
                continue
            task_rows.append({"prompt": prompt, "response": filled, "task": task})
        task_rows = mixture_rows(task_rows, facts.mixture_passes)
        counts[task] = len(task_rows)
        rows += task_rows
    path = root / "data" / "finetune.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"    fine-tuning mixture: {len(rows)} rows per epoch ({', '.join(f'{t} {n}' for t, n in counts.items())}; "
          f"up to {size.finetune_rows} training rows per task, read {passes} times; {dropped} longer "
          f"than their task's canvas left out) -> {path}")


def mixture_description(path: Path) -> str:
    """'3394 rows (gsm8k 600, spider 150, ...)': the fine-tuning mixture's rows per task, as written."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        task = json.loads(line)["task"]
        counts[task] = counts.get(task, 0) + 1
    return f"{sum(counts.values())} rows ({', '.join(f'{t} {n}' for t, n in counts.items())})"


def stage_pretrain(root: Path, size: DemoSize, env: dict[str, str]) -> None:
    run_logged(_trainer_cmd("demo_pretrain.yaml", {
        "data.path": root / "data" / "text" / "train.txt",
        "optim.epochs": size.pretrain_epochs,
        "run.output_dir": root / "base",
    }), root / "logs" / "pretrain.log", env, "pretrain")


FAMILY_NAMES = {"llada": "LLaDA", "dream": "Dream", "generic": "generic masked"}


def tiny_description() -> str:
    """The base model in words, from the pre-training config."""
    config = yaml.safe_load((CONFIGS / "demo_pretrain.yaml").read_text())
    tiny, family = config["tiny"], toy_name(config["model"]["pretrained"])
    return (f"{tiny['num_layers']}-layer width-{tiny['hidden_size']} {FAMILY_NAMES[family]}-like model "
            f"({tiny['vocab_size']}-token BPE vocabulary)")


SEEDS = (42, 123, 777)  # the paper's seeds; --seeds N takes the first N, then 1000, 1001, ...


def seeds_of(num_seeds: int) -> list[int]:
    """The run seeds of `--seeds num_seeds`."""
    if num_seeds < 1:
        raise StageError(f"--seeds must be >= 1, got {num_seeds}")
    return [*SEEDS[:num_seeds], *range(1000, 1000 + num_seeds - len(SEEDS))]


def run_name(method: str, seed: int | None) -> str:
    """Folder name of a model under the demo root: 'base', or 'baseline_s42' / 'jepa_s42'."""
    return method if seed is None else f"{method}_s{seed}"


def checkpoint_of(root: Path, method: str, seed: int | None = None) -> Path:
    """The HF checkpoint directory of the base (seed None) or of one fine-tune."""
    return root / run_name(method, seed) / "final"


def _finetune(method: str, seed: int, lora: bool = False) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        name = run_name(method, seed)
        run_logged(_trainer_cmd(f"demo_{method}.yaml", {
            "model.pretrained": checkpoint_of(root, "base"),
            "data.path": root / "data" / "finetune.jsonl",
            "optim.epochs": size.finetune_epochs,
            "run.seed": seed,
            "run.output_dir": root / name,
            **(LORA_OVERRIDES if lora else {}),
        }), root / "logs" / f"{name}.log", env, name)
    return stage


def _evaluate(method: str, seed: int | None) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        name = run_name(method, seed)
        out = root / "eval" / name
        shutil.rmtree(out, ignore_errors=True)
        model_args = (f"pretrained={checkpoint_of(root, method, seed)},steps={size.eval_steps},"
                      f"block_length={BLOCK_LENGTH},dtype=float32")
        run_logged([_bin("lm_eval"), "--model", "llada_diffusion", "--model_args", model_args,
                    "--tasks", "dllm_jepa_demo", "--limit", str(size.eval_limit), "--batch_size", "16",
                    "--device", "cpu", "--output_path", str(out), "--log_samples",
                    "--metadata", json.dumps({"data_dir": str(root / "data")})],
                   root / "logs" / f"eval_{name}.log", env, f"eval_{name}")
    return stage


def _finetunes(root: Path, seeds: list[int]) -> list[Path]:
    return [checkpoint_of(root, method, seed) for method in METHODS for seed in seeds]


def _probe(seeds: list[int]) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        analysis = [sys.executable, "-m", "dllm_jepa_train.analysis"]
        common = ["--base", str(checkpoint_of(root, "base")), "--finetunes",
                  *map(str, _finetunes(root, seeds)),
                  "--text-file", str(root / "data" / "text" / "valid.txt"), "--device", "cpu"]
        run_logged(analysis + ["probe", *common, "--num-docs", str(size.probe_docs),
                               "--out", str(root / "analysis" / "probe.json")],
                   root / "logs" / "probe.log", env, "probe")
        run_logged(analysis + ["drift", *common, "--num-samples", str(size.probe_docs),
                               "--out", str(root / "analysis" / "drift.json")],
                   root / "logs" / "drift.log", env, "probe")
    return stage


def _compare(seeds: list[int]) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "dllm_jepa_train.analysis", "compare"]
        for method in METHODS:
            for seed in seeds:
                cmd += ["--run", f"{method}:{seed}:{root / 'eval' / run_name(method, seed)}"]
        cmd += ["--probe", str(root / "analysis" / "probe.json"), "--drift", str(root / "analysis" / "drift.json"),
                "--out", str(root / "compare")]
        run_logged(cmd, root / "logs" / "compare.log", env, "compare")
    return stage


def _summary(seeds: list[int], lora: bool = False) -> Callable[[Path, DemoSize, dict[str, str]], None]:
    def stage(root: Path, size: DemoSize, env: dict[str, str]) -> None:
        canvas = {task: facts.canvas for task, facts in toy_task_defaults().items()}
        settings = (f"Toy scale: synthetic data, a {tiny_description()} pre-trained on the demo's text corpus; "
                    f"every task zero-shot, at most {size.eval_limit} test docs per task, answer canvas "
                    f"{canvas['gsm8k']} tokens (Spider {canvas['spider']}), {size.eval_steps} denoising steps in "
                    f"blocks of {BLOCK_LENGTH}, greedy; raw generations scored by the real tasks' metrics. Fine-tunes: "
                    f"{mixture_description(root / 'data' / 'finetune.jsonl')} per epoch, "
                    f"{size.finetune_epochs} epoch{'s' if size.finetune_epochs > 1 else ''}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; baseline and JEPA "
                    f"differ only in jepa.lambda (0 / 1)."
                    + (f" Both fine-tunes train LoRA adapters (rank {LoraConfig.rank}, alpha {LoraConfig.alpha:g}, "
                       "the blocks' attention and MLP projections; our extension: the paper fine-tunes every "
                       "weight)." if lora else ""))
        text = build_summary(
            root / "eval" / "base",
            [root / "eval" / run_name("baseline", s) for s in seeds],
            [root / "eval" / run_name("jepa", s) for s in seeds],
            root / "analysis" / "probe.json", root / "analysis" / "drift.json",
            {m: [checkpoint_of(root, m, s) for s in seeds] for m in METHODS}, settings)
        (root / "summary.md").write_text(text)
    return stage


def stages_for(seeds: list[int], lora: bool = False) -> list[tuple[str, Callable[[Path, DemoSize, dict[str, str]], None]]]:
    """Every stage of a demo with these seeds (LoRA fine-tunes with `lora`), in order; names are stable, so a
    rerun reuses them (a root holds one kind of demo: `run_demo` checks)."""
    return [
        ("data", stage_data),
        ("pretrain", stage_pretrain),
        ("finetune_data", stage_finetune_data),
        *[(run_name(m, s), _finetune(m, s, lora)) for s in seeds for m in METHODS],
        ("eval_base", _evaluate("base", None)),
        *[(f"eval_{run_name(m, s)}", _evaluate(m, s)) for s in seeds for m in METHODS],
        # The next three read every seed's runs: their names carry the seed count, so adding seeds reruns them.
        (f"probe_{len(seeds)}seeds", _probe(seeds)),
        (f"compare_{len(seeds)}seeds", _compare(seeds)),
        (f"summary_{len(seeds)}seeds", _summary(seeds, lora)),
    ]


STAGES = stages_for(seeds_of(1))


def _load_state(path: Path, size_name: str, lora: bool = False) -> dict:
    if not path.exists():
        return {"size": size_name, "lora": lora, "done": {}}
    state = json.loads(path.read_text())
    if state.get("size") != size_name:
        raise StageError(f"{path.parent} holds a '{state.get('size')}' demo; rerun with --size "
                         f"{state.get('size')}, another --root, or --fresh")
    if state.get("lora", False) != lora:
        kind = "a LoRA" if state.get("lora") else "a full fine-tuning"
        raise StageError(f"{path.parent} holds {kind} demo; rerun {'with' if state.get('lora') else 'without'} "
                         "--lora, with another --root, or with --fresh")
    return state


def run_demo(root: Path, size_name: str = "default", fresh: bool = False, num_seeds: int = 1,
             lora: bool = False) -> dict[str, float]:
    """Run every stage not yet finished under `root` (LoRA fine-tunes with `lora`); return {stage: seconds} of
    this and earlier runs."""
    if size_name not in SIZES:
        raise StageError(f"--size must be one of {', '.join(SIZES)}; got {size_name!r}")
    size = SIZES[size_name]
    stages = stages_for(seeds_of(num_seeds), lora)
    root = root.resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / "stages.json"
    state = _load_state(state_path, size_name, lora)
    env = _env(root)
    for index, (name, stage) in enumerate(stages, start=1):
        header = f"[{index}/{len(stages)}] {name}"
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
    return {name: state["done"][name] for name, _ in stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="where every stage writes (default demo_runs/, with --lora "
                        "demo_runs_lora/)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES), help="default or small (CI)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="fine-tunes per method (seeds 42, 123, 777, ...); each adds about a third to the run time")
    parser.add_argument("--fresh", action="store_true", help="delete --root first and run every stage")
    parser.add_argument("--lora", action="store_true", help="both fine-tunes train LoRA adapters on the frozen base "
                        "(our extension; the paper fine-tunes every weight); the rest of the recipe is unchanged")
    args = parser.parse_args(argv)
    args.root = args.root or ("demo_runs_lora" if args.lora else "demo_runs")
    wall = time.perf_counter()
    try:
        timings = run_demo(Path(args.root), args.size, args.fresh, args.seeds, args.lora)
    except StageError as err:
        print(f"\ndemo failed: {err}", file=sys.stderr)
        return 1
    root = Path(args.root)
    print("\nStage times (seconds):")
    for name, seconds in timings.items():
        print(f"  {name:<22} {seconds:8.1f}")
    print(f"  {'total':<22} {sum(timings.values()):8.1f}   (this invocation: {time.perf_counter() - wall:.1f})")
    print(f"\nOutputs: {root}/summary.md (the table below), {root}/compare (per-metric table, plots), "
          f"{root}/eval (lm-eval results and samples), {root}/logs\n")
    print((root / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
