"""The real `lm_eval` command on a tiny local task, through the installed package and its startup hook.

Needs the project installed non-editable (`pip install .`, as scripts/test.sh does): the `.pth` hook is
what registers `llada_diffusion` with lm-eval 0.4.13. A missing or stale install fails with the fix.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tests" / "assets" / "tiny_task"
BIN = Path(sys.executable).parent
MODEL_ARGS = "steps=8,gen_length=16,block_length=8,mc_num=8,mc_batch_size=8"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The installed package folder, checked to be identical to the checkout's."""
    probe = subprocess.run(
        [sys.executable, "-c",
         "import lm_eval_diffusion, pathlib; print(pathlib.Path(lm_eval_diffusion.__file__).parent)"],
        cwd=tmp_path_factory.mktemp("probe"), env=clean_env(), capture_output=True, text=True,
    )
    if probe.returncode != 0:
        pytest.fail(f"lm_eval_diffusion is not installed in {sys.executable}'s environment; run "
                    f"`pip install --no-deps --force-reinstall .` (scripts/test.sh does)\n{probe.stderr[-2000:]}")
    package = Path(probe.stdout.strip().splitlines()[-1])
    source = ROOT / "lm_eval_diffusion"
    pairs = [(p, package / p.relative_to(source)) for p in source.rglob("*.py")]
    # The startup hook (.pth and its module) sits beside the package in site-packages.
    hook_files = ("lm_eval_diffusion_hook.pth", "lm_eval_diffusion_hook.py")
    pairs += [(ROOT / name, package.parent / name) for name in hook_files if (ROOT / name).exists()]
    stale = [str(mine.relative_to(ROOT)) for mine, theirs in pairs
             if not theirs.exists() or not filecmp.cmp(mine, theirs, shallow=False)]
    if stale:
        pytest.fail(f"the installed package at {package} differs from the checkout in {', '.join(sorted(stale))}; "
                    "reinstall with `pip install --no-deps --force-reinstall .`")
    return package


def run(*cmds: list[str], cwd: Path, timeout: int = 300) -> list[tuple[str, str]]:
    """Run the commands concurrently (most of each is lm-eval's import time); (stdout, stderr) of each."""
    procs = [subprocess.Popen(cmd, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in cmds]
    outputs = []
    for cmd, proc in zip(cmds, procs):
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-5000:]}"
        outputs.append((stdout, stderr))
    return outputs


def read_outputs(out: Path) -> tuple[dict, dict[str, dict[int, list]]]:
    """(results['results'], {task: {doc_id: first response of each request}}) from an --output_path."""
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = re.match(r"samples_(.+)_\d{4}-\d\d-\d\dT", path.name).group(1)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        # lm-eval pads uneven shards by repeating a request; its extra responses are not results.
        samples[task] = {row["doc_id"]: [resp[0] for resp in row["resps"]] for row in rows}
    return results["results"], samples


def test_hook_registers_the_model_and_keeps_builtins(installed, tmp_path):
    code = (
        "from lm_eval.api.registry import get_model\n"
        "import lm_eval.models\n"
        "from lm_eval_diffusion.harness import DiffusionLM\n"
        "assert get_model('llada_diffusion') is DiffusionLM, get_model('llada_diffusion')\n"
        "assert get_model('diffusion_lm') is DiffusionLM\n"
        "assert get_model('hf').__name__ == 'HFLM', get_model('hf')\n"
        "assert get_model('dummy').__name__ == 'DummyLM'\n"
        "print('ok')\n"
    )
    assert run([sys.executable, "-c", code], cwd=tmp_path)[0][0].strip().endswith("ok")


def test_lm_eval_command_single_process_and_two_ranks_agree(installed, tiny_checkpoints, tmp_path):
    common = ["--model_args", f"pretrained={tiny_checkpoints['llada']},{MODEL_ARGS}", "--device", "cpu",
              "--tasks", "tiny_echo,tiny_choice", "--include_path", str(TASKS), "--limit", "4", "--log_samples"]
    _, (_, two_log) = run(
        [str(BIN / "lm_eval"), "--model", "llada_diffusion", "--batch_size", "4", *common,
         "--output_path", str(tmp_path / "single")],
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "lm_eval", "run",
         "--model", "diffusion_lm", "--batch_size", "2", *common, "--output_path", str(tmp_path / "two")],
        cwd=tmp_path,
    )
    single_results, single_samples = read_outputs(tmp_path / "single")
    two_results, two_samples = read_outputs(tmp_path / "two")

    # Every document of every task, from both ranks, with its generation or scores.
    assert {task: sorted(docs) for task, docs in single_samples.items()} == {"tiny_echo": [0, 1, 2, 3],
                                                                          "tiny_choice": [0, 1, 2, 3]}
    assert all(isinstance(r, str) and r for resps in single_samples["tiny_echo"].values() for r in resps)
    assert all(float(ll) < 0 for resps in single_samples["tiny_choice"].values() for ll, _ in resps)
    assert two_samples == single_samples
    for task in ("tiny_echo", "tiny_choice"):
        metric = "exact_match,none" if task == "tiny_echo" else "acc,none"
        assert two_results[task][metric] == single_results[task][metric]
    assert "on rank 1" in two_log  # lm-eval saw our rank; the shards above came from both ranks
    # Row-forwards are summed over ranks: the two shards together spent what one process spent.
    configs = [json.loads(next((tmp_path / name).rglob("results_*.json")).read_text())["config"]
               for name in ("single", "two")]
    assert configs[0]["row_forwards"] == configs[1]["row_forwards"]
    assert configs[0]["row_forwards"]["tiny_echo"]["requests"] == 4


def test_lm_eval_command_runs_the_zero_shot_group_on_the_real_data(installed, tiny_checkpoints, tmp_path):
    from conftest import shared_data_or_skip

    from lm_eval_diffusion import prompts

    data_dir = shared_data_or_skip()
    run([str(BIN / "lm_eval"), "--model", "llada_diffusion", "--device", "cpu",
         "--model_args", f"pretrained={tiny_checkpoints['llada']},steps=8,gen_length=16,block_length=8",
         "--tasks", "dllm_jepa_0shot", "--limit", "2", "--metadata", json.dumps({"data_dir": str(data_dir)}),
         "--log_samples", "--output_path", str(tmp_path / "out")], cwd=tmp_path)
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    tasks = {"gsm8k_dllm_0shot": "gsm8k", "spider_exec_0shot": "spider", "nlrx_synth_0shot": "nlrx",
             "django_code_0shot": "django"}
    assert set(tasks) <= set(results["results"])
    assert {name: results["n-shot"][name] for name in tasks} == {name: 0 for name in tasks}
    for name, task in tasks.items():
        path = next((tmp_path / "out").rglob(f"samples_{name}_*.jsonl"))
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert sorted({row["doc_id"] for row in rows}) == [0, 1]
        for row in rows:
            context, gen_kwargs = row["arguments"]["gen_args_0"]["arg_0"], row["arguments"]["gen_args_0"]["arg_1"]
            assert context == prompts.training_pair(task, row["doc"])[0]  # exactly the trainer's prompt
            assert gen_kwargs["until"] == (["Question:", "</s>", "<|im_end|>"] if task == "gsm8k" else [])
