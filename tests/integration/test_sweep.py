"""The sweep command: crossed and paired axes, one baseline per grid and seed, validation before writing,
the written configs and scripts; and (slow) a 2 x 2 grid run through its own launch.sh and eval.sh."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from dllm_jepa_train.config import load_config
from dllm_jepa_train.sweep import main

PROJECT = Path(__file__).resolve().parents[2]
CONFIGS = PROJECT / "dllm_jepa_train" / "configs"
TINY = str(CONFIGS / "tiny_jepa.yaml")
GRID_2X2 = ["--config", TINY, "--grid", "jepa.lambda=0.5,1", "--grid", "jepa.predictor_depth=1,2"]


def _commands(capsys) -> tuple[list[str], list[str], str]:
    text = capsys.readouterr().out
    launch = [line for line in text.splitlines() if line.startswith("deepspeed ")]
    evals = [line for line in text.splitlines() if line.startswith("accelerate launch ")]
    return launch, evals, text


def test_dry_run_of_a_2x2_grid_prints_4_runs_and_one_baseline_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*GRID_2X2, "--seeds", "42", "--out", str(out), "--dry-run", "--no-baseline"]) == 0
    launch, evals, text = _commands(capsys)
    assert len(launch) == 4 == len(evals) and "# 4 runs (4 JEPA/ablation, 0 baseline)" in text
    names = {line.rsplit("/", 1)[-1] for line in launch}
    assert names == {f"tiny_jepa__lambda{lam}_predictor-depth{k}_s42.yaml" for lam in (0.5, 1) for k in (1, 2)}
    assert main([*GRID_2X2, "--seeds", "42", "--out", str(out), "--dry-run"]) == 0
    launch, _, _ = _commands(capsys)
    assert len(launch) == 5 and launch[0].endswith("tiny_jepa__baseline_s42.yaml")  # once, not once per k
    assert not out.exists()


def test_table7_and_table9_shapes():
    from dllm_jepa_train.sweep import expand, parse_grid, parse_pair

    config = [str(CONFIGS / "gsm8k_jepa.yaml")]
    table7 = expand(config, [parse_grid("jepa.lambda=0.5,1,2"), parse_grid("jepa.predictor_depth=1,2,3,4,5")],
                    [42, 123, 777], Path("/sweeps/t7"), [], True)
    assert len(table7) == 3 * (15 + 1) and sum(r.is_baseline for r in table7) == 3
    assert len({r.name for r in table7}) == len(table7)
    cell = next(r for r in table7 if r.values == {"jepa.lambda": 2, "jepa.predictor_depth": 4} and r.seed == 123)
    assert (cell.cfg.jepa.lambda_, cell.cfg.jepa.predictor_depth, cell.cfg.run.seed) == (2.0, 4, 123)
    assert cell.cfg.run.output_dir == f"/sweeps/t7/runs/{cell.name}"
    pairs = "diffusion.t_context,jepa.t_target=0.1:0.5,0.2:0.5,0.2:0.7,0.3:0.9"
    table9 = expand(config, [parse_pair(pairs)], [42], Path("/sweeps/t9"), [], True)
    jepa = [(r.cfg.diffusion.t_context, r.cfg.jepa.t_target) for r in table9 if not r.is_baseline]
    assert jepa == [((0.1, 0.1), (0.5, 0.5)), ((0.2, 0.2), (0.5, 0.5)), ((0.2, 0.2), (0.7, 0.7)), ((0.3, 0.3), (0.9, 0.9))]
    # a baseline depends on t_L (its diffusion loss) but not on t_H: one per distinct t_L
    assert sorted(r.cfg.diffusion.t_context for r in table9 if r.is_baseline) == [(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)]
    assert all(r.cfg.jepa.lambda_ == 0 for r in table9 if r.is_baseline)


@pytest.mark.parametrize("args, message", [
    (["--grid", "jepa.lamda=1,2"], r"unknown config key jepa\.'lamda'"),
    (["--grid", "jepa.lambda=1,-2"], r"jepa\.lambda: must be >= 0"),
    (["--grid", "jepa.lambda=1,2", "--grid", "jepa.lambda=3"], r"appear on more than one axis"),
    (["--pair", "diffusion.t_context,jepa.t_target=0.1:0.5,0.2"], r"'0\.2' has 1 values for 2 keys"),
    (["--grid", "jepa.predictor_depth=1,"], r"empty value"),
    (["--grid", "run.seed=1,2"], r"run\.seed is set by the sweep"),
    (["--grid", "optim.global_batch_size=32,33"], r"must be a multiple of optim\.micro_batch_size"),
])
def test_invalid_grids_fail_before_anything_is_written(tmp_path, capsys, args, message):
    import re

    out = tmp_path / "sweep"
    assert main(["--config", TINY, *args, "--seeds", "1", "--out", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_written_configs_and_scripts(tmp_path):
    out = tmp_path / "sweep"
    assert main(["--config", str(CONFIGS / "gsm8k_jepa.yaml"), "--grid", "jepa.lambda=1,2", "--seeds", "42,123",
                 "--out", str(out), "--num-gpus", "8", "--hostfile", "hosts", "--eval-tasks", "gsm8k_dllm_0shot",
                 "--num-fewshot", "0", "--set", "optim.max_steps=100"]) == 0
    manifest = json.loads((out / "sweep.json").read_text())["runs"]
    assert len(manifest) == 2 * 3 and len(list((out / "configs").glob("*.yaml"))) == 6
    for entry in manifest:
        cfg = load_config(entry["config"])
        assert cfg.run.seed == entry["seed"] and cfg.optim.max_steps == 100 and cfg.optim.global_batch_size == 32
        assert cfg.jepa.lambda_ == (0.0 if entry["baseline"] else entry["values"]["jepa.lambda"])
        assert cfg.run.output_dir == str(out / "runs" / entry["name"])
    launch = (out / "launch.sh").read_text().splitlines()
    lines = [line for line in launch if line.startswith("deepspeed")]
    assert len(lines) == 6 and all(line.startswith("deepspeed --hostfile hosts --num_gpus 8 ") for line in lines)
    assert all(shlex.split(line)[-2:] == ["--config", e["config"]] for line, e in zip(lines, manifest))
    evals = [line for line in (out / "eval.sh").read_text().splitlines() if line.startswith("accelerate")]
    assert len(evals) == 6 and all("--tasks gsm8k_dllm_0shot --num_fewshot 0" in line for line in evals)
    assert f"pretrained={out}/runs/{manifest[0]['name']}/final" in evals[0]
    assert main(["--config", str(CONFIGS / "gsm8k_jepa.yaml"), "--grid", "jepa.lambda=1", "--out", str(out)]) == 2
    assert not (out / "eval_dev.sh").exists()


def test_a_dev_slice_gets_its_own_eval_script(tmp_path):
    out = tmp_path / "sweep"
    assert main(["--config", str(CONFIGS / "gsm8k_jepa.yaml"), "--grid", "jepa.lambda=1,2", "--seeds", "42",
                 "--set", "data.dev_rows=500", "--eval-tasks", "gsm8k_dllm_0shot", "--out", str(out)]) == 0
    lines = [line for line in (out / "eval_dev.sh").read_text().splitlines() if line.startswith("accelerate")]
    assert len(lines) == 3
    for line in lines:
        args = shlex.split(line)
        run_dir = Path(args[args.index("--model_args") + 1].split("=", 1)[1]).parent
        assert json.loads(args[args.index("--metadata") + 1]) == {"data_dir": str(run_dir / "dev_data")}
        assert args[args.index("--output_path") + 1] == str(out / "eval_dev" / run_dir.name)


