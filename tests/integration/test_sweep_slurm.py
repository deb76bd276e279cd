"""The sweep's Slurm job arrays (--scheduler slurm): the sbatch scripts' text, array ranges and per-task
commands; a training task run by bash with a fake `scontrol` / `deepspeed`; submit.sh's resubmission
logic with a fake `sbatch` / `squeue` over a sweep folder with some runs finished. Nothing runs under
Slurm here."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from dllm_jepa_train.slurm import array_spec
from dllm_jepa_train.sweep import main

PROJECT = Path(__file__).resolve().parents[2]
GSM8K = str(PROJECT / "dllm_jepa_train" / "configs" / "gsm8k_jepa.yaml")
# 6 runs; data.dev_rows 500 on odd indices (baseline, lambda 1, lambda 2 x dev_rows 0, 500), so eval_dev.sbatch
# holds a sparse array
SWEEP = ["--config", GSM8K, "--grid", "jepa.lambda=1,2", "--grid", "data.dev_rows=0,500", "--seeds", "42",
         "--eval-tasks", "gsm8k_dllm_0shot", "--scheduler", "slurm", "--num-gpus", "4"]


def _sweep(out: Path, *extra: str) -> list[dict]:
    assert main([*SWEEP, "--out", str(out), *extra]) == 0
    return json.loads((out / "sweep.json").read_text())["runs"]


def _directives(text: str) -> dict[str, str]:
    """#SBATCH --key=value lines -> {key: value}; asserts they all precede the first command (sbatch stops
    reading directives there)."""
    lines = text.splitlines()
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert not any(line.startswith("#SBATCH") for line in lines[first_command:])
    found = [line.split(None, 1)[1] for line in lines[:first_command] if line.startswith("#SBATCH")]
    return dict(d[2:].split("=", 1) if "=" in d else (d[2:], "") for d in found)


def _cases(text: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^  (\d+)\) (.*) ;;$", text, flags=re.M)}


def _executable(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_array_spec_compresses_indices():
    assert array_spec([0, 1, 2, 3]) == "0-3"
    assert array_spec([5, 0, 1, 7, 8, 3]) == "0-1,3,5,7-8"
    assert array_spec([4]) == "4"


def test_sbatch_scripts_hold_one_task_per_run_at_its_sweep_json_index(tmp_path):
    out = tmp_path / "t7"
    runs = _sweep(out, "--slurm-time", "2-00:00:00", "--slurm-eval-time", "04:00:00", "--slurm-partition", "gpu",
                  "--slurm-eval-gpus", "1", "--slurm-sbatch=--account=abc", "--slurm-sbatch", "#SBATCH --qos=high",
                  "--slurm-max-parallel", "2", "--launcher-args", "--master_port 29501", "--slurm-cpus-per-task", "64",
                  "--slurm-mem", "0", "--slurm-eval-cpus-per-task", "16")
    for name in ("train.sbatch", "eval.sbatch", "eval_dev.sbatch", "submit.sh"):
        proc = subprocess.run(["bash", "-n", str(out / name)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (name, proc.stderr)
    assert (out / "logs").is_dir()  # Slurm does not create an --output folder
    train_text = (out / "train.sbatch").read_text()
    train = _directives(train_text)
    assert train == {"job-name": "t7-train", "array": "0-5%2", "nodes": "1", "ntasks-per-node": "1",
                     "gpus-per-node": "4", "cpus-per-task": "64", "mem": "0", "time": "2-00:00:00",
                     "partition": "gpu", "output": f'"{out}/logs/train_%a_%A.log"', "account": "abc", "qos": "high"}
    assert "hostfile" not in train_text  # one node: deepspeed takes the GPUs Slurm made visible
    commands = _cases(train_text)
    assert sorted(commands) == list(range(6))
    for i, run in enumerate(runs):
        args = shlex.split(commands[i])
        assert args[:5] == ["deepspeed", "--master_port", "$port", "--master_port", "29501"]
        assert args[-4:] == ["--config", run["config"], "--run.resume", "auto"]
    evals = (out / "eval.sh").read_text().splitlines()[-6:]
    for stage, indices in (("eval", list(range(6))), ("eval_dev", [1, 3, 5])):
        text = (out / f"{stage}.sbatch").read_text()
        directives = _directives(text)
        assert directives["array"] == ("0-5%2" if stage == "eval" else "1,3,5%2")
        assert (directives["job-name"], directives["gpus-per-node"], directives["time"], directives["nodes"]) == (
            f"t7-{stage}", "1", "04:00:00", "1")
        assert (directives["cpus-per-task"], directives["mem"]) == ("16", "0")  # --mem defaults to training's
        assert directives["output"] == f'"{out}/logs/{stage}_%a_%A.log"'
        cases = _cases(text)
        assert sorted(cases) == indices
        for i in indices:
            args = shlex.split(cases[i])
            assert args[args.index("--model_args") + 1] == f"pretrained={runs[i]['output_dir']}/final"
            assert args[args.index("--output_path") + 1] == str(out / stage / runs[i]["name"])
            assert stage == "eval_dev" or cases[i] == evals[i]  # the same command as eval.sh's line
    # an --overwrite without Slurm leaves no stale array or submit script behind
    assert main([*SWEEP[:-4], "--out", str(out), "--overwrite"]) == 0
    assert not any((out / name).exists() for name in ("train.sbatch", "eval.sbatch", "eval_dev.sbatch", "submit.sh"))


def test_a_training_task_on_two_nodes_writes_a_hostfile_and_runs_its_own_run(tmp_path):
    out = tmp_path / "sweep"
    runs = _sweep(out, "--slurm-nodes", "2")
    assert _directives((out / "train.sbatch").read_text())["exclusive"] == ""
    assert _directives((out / "eval.sbatch").read_text())["nodes"] == "1"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "deepspeed_args"
    _executable(bin_dir, "scontrol", '[ "$*" = "show hostnames gpu[07-08]" ] || exit 9\nprintf "gpu07\\ngpu08\\n"\n')
    _executable(bin_dir, "deepspeed", f'printf "%s\\n" "$@" > {record}\n')
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu[07-08]",
           "SLURM_JOB_ID": "123457", "SLURM_ARRAY_JOB_ID": "123450", "SLURM_ARRAY_TASK_ID": "4"}
    proc = subprocess.run(["bash", str(out / "train.sbatch")], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    hostfile = out / "logs" / "train_4_123450.hostfile"
    assert hostfile.read_text() == "gpu07 slots=4\ngpu08 slots=4\n"
    assert record.read_text().splitlines() == [
        "--master_port", str(10000 + 123457 % 20000), "--hostfile", str(hostfile),
        str(PROJECT / "dllm_jepa_train" / "main.py"), "--config", runs[4]["config"], "--run.resume", "auto"]
    proc = subprocess.run(["bash", str(out / "train.sbatch")], env={**env, "SLURM_ARRAY_TASK_ID": "6"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "no run at array index 6" in proc.stderr


def _fake_slurm(tmp_path: Path, queued: str = "") -> tuple[dict[str, str], Path]:
    """A PATH whose `sbatch` records its arguments and prints job ids 101, 102, ... (with a cluster name, as
    --parsable does on a federation), and whose `squeue` prints `queued`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "sbatch_calls"
    calls.write_text("")
    _executable(bin_dir, "sbatch", f'echo "$*" >> {calls}\necho "$((100 + $(wc -l < {calls})));cluster1"\n')
    _executable(bin_dir, "squeue", f"printf '%s' {shlex.quote(queued)}\n")
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "USER": "me"}, calls


def _submit(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(out / "submit.sh")], env=env, capture_output=True, text=True, check=False)


def test_submit_sh_submits_the_unfinished_training_and_pairs_each_evaluation_with_its_task(tmp_path, capsys):
    out = tmp_path / "sweep"
    runs = _sweep(out)
    # no CPU / memory options: no directive (the cluster's defaults), and a note that says so
    assert not {"cpus-per-task", "mem"} & set(_directives((out / "train.sbatch").read_text()))
    assert "note: no --slurm-cpus-per-task / --slurm-mem:" in capsys.readouterr().err
    _sweep(tmp_path / "other", "--slurm-sbatch=--mem-per-gpu=64G", "--slurm-cpus-per-task", "8")
    assert "note: no" not in capsys.readouterr().err
    env, calls = _fake_slurm(tmp_path)
    proc = _submit(out, env)
    assert proc.returncode == 0, proc.stderr
    assert calls.read_text().splitlines() == [  # a fresh sweep: everything, every evaluation after its training
        f"--parsable --array=0,1,2,3,4,5 {out}/train.sbatch",
        f"--parsable --array=0,1,2,3,4,5 --dependency=aftercorr:101 --kill-on-invalid-dep=yes {out}/eval.sbatch",
        f"--parsable --array=1,3,5 --dependency=aftercorr:101 --kill-on-invalid-dep=yes {out}/eval_dev.sbatch"]

    def finish_training(i: int) -> None:
        (Path(runs[i]["output_dir"]) / "final").mkdir(parents=True)

    def finish_eval(stage: str, i: int) -> None:
        folder = out / stage / runs[i]["name"] / "__runs__final"  # lm-eval nests results under the model name
        folder.mkdir(parents=True)
        (folder / "results_2026-12-05T08-00-00.json").write_text("{}")

    for i in (0, 1, 4, 5):
        finish_training(i)
    for stage, i in (("eval", 0), ("eval", 2), ("eval", 4), ("eval_dev", 1)):
        finish_eval(stage, i)
    (Path(runs[3]["output_dir"]) / "checkpoints" / "step_10").mkdir(parents=True)  # killed: resumes, not finished
    (out / "eval" / runs[5]["name"]).mkdir(parents=True)  # an evaluation that wrote no results JSON
    calls.write_text("")
    proc = _submit(out, env)
    assert proc.returncode == 0, proc.stderr
    # training unfinished: 2, 3. eval: 3 after its training (2 is scored already), 1 and 5 at once.
    # eval_dev (1, 3, 5): 3 after its training, 5 at once (1 is scored already).
    assert calls.read_text().splitlines() == [
        f"--parsable --array=2,3 {out}/train.sbatch",
        f"--parsable --array=3 --dependency=aftercorr:101 --kill-on-invalid-dep=yes {out}/eval.sbatch",
        f"--parsable --array=1,5 {out}/eval.sbatch",
        f"--parsable --array=3 --dependency=aftercorr:101 --kill-on-invalid-dep=yes {out}/eval_dev.sbatch",
        f"--parsable --array=5 {out}/eval_dev.sbatch"]
    assert "training: job 101, array 2,3" in proc.stdout

    for i in (2, 3):
        finish_training(i)
    for stage, i in (("eval", 1), ("eval", 3), ("eval", 5), ("eval_dev", 3), ("eval_dev", 5)):
        finish_eval(stage, i)
    calls.write_text("")
    proc = _submit(out, env)
    assert proc.returncode == 0 and calls.read_text() == ""
    assert "nothing to submit" in proc.stdout


def test_submit_sh_refuses_while_jobs_of_the_sweep_are_queued(tmp_path):
    out = tmp_path / "sweep"
    _sweep(out, "--slurm-job-name", "t7", "--slurm-max-parallel", "3")
    env, calls = _fake_slurm(tmp_path, queued="4242_[3] t7-eval PENDING")
    proc = _submit(out, env)
    assert proc.returncode == 1 and "4242_[3] t7-eval PENDING" in proc.stderr and calls.read_text() == ""
    assert "--name t7-train,t7-eval,t7-eval_dev " in (out / "submit.sh").read_text()
    env, calls = _fake_slurm(tmp_path)
    assert _submit(out, env).returncode == 0
    assert calls.read_text().splitlines()[0] == f"--parsable --array=0,1,2,3,4,5%3 {out}/train.sbatch"


def test_an_out_folder_with_a_space_gives_quoted_log_paths_and_a_safe_job_name(tmp_path):
    out = tmp_path / "my sweep #1"
    _sweep(out, "--slurm-nodes", "2")
    for name in ("train.sbatch", "eval.sbatch", "eval_dev.sbatch", "submit.sh"):
        proc = subprocess.run(["bash", "-n", str(out / name)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (name, proc.stderr)
    text = (out / "train.sbatch").read_text()
    assert f'#SBATCH --output="{out}/logs/train_%a_%A.log"\n' in text
    assert "#SBATCH --job-name=my_sweep__1-train\n" in text
    assert f"hostfile={shlex.quote(str(out / 'logs'))}" in text


@pytest.mark.parametrize("folder", ['a"b', "a%jb", "a\nb", "a\\b"])
def test_an_out_folder_an_sbatch_path_cannot_hold_fails_before_anything_is_written(tmp_path, capsys, folder):
    out = tmp_path / folder
    assert main(["--config", GSM8K, "--grid", "jepa.lambda=1", "--seeds", "1", "--out", str(out), "--scheduler",
                 "slurm", "--num-gpus", "8"]) == 2
    err = capsys.readouterr().err
    assert f"error: --out {str(out)!r}: holds" in err and "#SBATCH --output path cannot" in err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "slurm"], r"--scheduler slurm needs --num-gpus"),
    (["--scheduler", "slurm", "--num-gpus", "8", "--hostfile", "h"], r"--hostfile: not with --scheduler slurm"),
    (["--slurm-time", "1:00:00", "--slurm-nodes", "2"], r"--slurm-nodes, --slurm-time need --scheduler slurm"),
    (["--scheduler", "slurm", "--num-gpus", "8", "--slurm-sbatch=account=abc"], r"expected one long option"),
    (["--scheduler", "slurm", "--num-gpus", "8", "--slurm-nodes", "0"], r"--slurm-nodes 0: must be >= 1"),
    (["--scheduler", "slurm", "--num-gpus", "8", "--slurm-job-name", "a b"], r"--slurm-job-name 'a b'"),
    (["--scheduler", "slurm", "--num-gpus", "8", "--slurm-mem", "500GB"], r"--slurm-mem '500GB': expected a size"),
    (["--scheduler", "slurm", "--num-gpus", "8", "--slurm-eval-cpus-per-task", "0"],
     r"--slurm-eval-cpus-per-task 0: must be >= 1"),
])
def test_bad_slurm_options_fail_before_anything_is_written(tmp_path, capsys, args, message):
    out = tmp_path / "sweep"
    assert main(["--config", GSM8K, "--grid", "jepa.lambda=1", "--seeds", "1", "--out", str(out), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()
