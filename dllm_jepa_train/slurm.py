"""A sweep as Slurm job arrays: the text of train.sbatch, eval.sbatch (eval_dev.sbatch) and submit.sh.

Written by `python -m dllm_jepa_train.sweep ... --scheduler slurm --num-gpus N`; nothing here submits.
Array task i of every stage is run i of sweep.json, so a stage's tasks pair with the training tasks by
index: `--dependency=aftercorr:<training job>` starts evaluation task i when training task i has
succeeded. submit.sh submits what is unfinished (training: no `<run>/final/`; evaluation: no
`results_*.json` under its output folder), so it is both the first submission and the resubmission after
a time-out or a failure; the training command carries `--run.resume auto`, which continues a killed run
from its latest step checkpoint (a run without one starts from scratch).

Several nodes per training task: the task writes a deepspeed hostfile from `$SLURM_JOB_NODELIST`
(`scontrol show hostnames`) and deepspeed's launcher starts the other nodes' ranks from it (pdsh / ssh by
default; `--launcher-args '--launcher ...'` picks another of its launchers). One node: deepspeed takes the
GPUs Slurm made visible.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from dllm_jepa_train.config import ConfigError

SCRIPT_NAMES = ("train.sbatch", "eval.sbatch", "eval_dev.sbatch", "submit.sh")


@dataclass
class SlurmOptions:
    """What the sbatch scripts ask Slurm for; None leaves a setting to the cluster's default."""

    job_name: str  # array jobs are <job_name>-train, -eval, -eval_dev (submit.sh's queue check reads them)
    gpus_per_node: int  # training: --gpus-per-node; the hostfile's slots with several nodes
    nodes: int = 1  # nodes per training task; > 1 through a hostfile from $SLURM_JOB_NODELIST
    eval_gpus: int | None = None  # GPUs of an evaluation task (one node); None: gpus_per_node
    time: str | None = None  # training task's --time, e.g. 2-00:00:00
    eval_time: str | None = None  # evaluation task's --time; None: time
    # CPUs and memory: None leaves them to the cluster's defaults; without DefCpuPerGPU / DefMemPerGPU a task
    # typically gets 1 CPU and DefMemPerCPU for it, too little for N ranks each loading an 8B checkpoint
    cpus_per_task: int | None = None  # training task's --cpus-per-task (its one task runs every rank of a node)
    mem: str | None = None  # training task's --mem per node, e.g. 500G; 0: all of the node's memory
    eval_cpus_per_task: int | None = None  # evaluation task's --cpus-per-task; None: cpus_per_task
    eval_mem: str | None = None  # evaluation task's --mem; None: mem
    partition: str | None = None
    sbatch_lines: list[str] = field(default_factory=list)  # extra directives, e.g. '--account=abc', every stage
    max_parallel: int | None = None  # at most this many tasks of an array at once (--array=...%K)

    def validate(self) -> None:
        """Raise ConfigError naming the bad option."""
        if not re.fullmatch(r"[A-Za-z0-9._+-]+", self.job_name):
            raise ConfigError(f"--slurm-job-name {self.job_name!r}: letters, digits and ._+- only")
        for flag, value in (("--num-gpus", self.gpus_per_node), ("--slurm-nodes", self.nodes),
                            ("--slurm-eval-gpus", self.eval_gpus), ("--slurm-max-parallel", self.max_parallel),
                            ("--slurm-cpus-per-task", self.cpus_per_task),
                            ("--slurm-eval-cpus-per-task", self.eval_cpus_per_task)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} {value}: must be >= 1")
        for flag, value in (("--slurm-mem", self.mem), ("--slurm-eval-mem", self.eval_mem)):
            if value is not None and not re.fullmatch(r"\d+[KMGT]?", value, flags=re.I):
                raise ConfigError(f"{flag} {value!r}: expected a size per node as sbatch --mem takes it, e.g. 500G "
                                  "(0: all of the node's memory)")
        for line in self.sbatch_lines:
            if not directive(line).startswith("--") or "\n" in line:
                raise ConfigError(f"--slurm-sbatch {line!r}: expected one long option, e.g. '--account=abc'")


def check_out_path(out: str) -> None:
    """Raise ConfigError if --out cannot stand in a double-quoted #SBATCH --output path."""
    # sbatch's directive parser ends a quoted argument at `"`, drops a backslash as an escape, and expands `%`
    # in --output as a filename pattern; a newline would end the directive
    for char, why in (('"', "a double quote"), ("\\", "a backslash"), ("%", "% (an sbatch filename pattern)"),
                      ("\n", "a newline")):
        if char in out:
            raise ConfigError(f"--out {out!r}: holds {why}, which an #SBATCH --output path cannot; pick another "
                              "folder for --scheduler slurm")


def safe_job_name(name: str) -> str:
    """A job name from a folder name: characters other than letters, digits and ._+- become _."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "sweep"


def directive(line: str) -> str:
    """'--account=abc' or '#SBATCH --account=abc' -> '--account=abc'."""
    return re.sub(r"^\s*#SBATCH\s+", "", line).strip()


def array_spec(indices: list[int]) -> str:
    """Sorted array indices as Slurm writes them: [0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    if not indices:
        raise ValueError("an array needs at least one index")
    ordered = sorted(set(indices))
    spans: list[list[int]] = []
    for i in ordered:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def train_command(main_path: str, config_path: str, launcher_args: str, nodes: int) -> str:
    """The deepspeed line of one training task; `$port` and `$hostfile` are set by the task script."""
    parts = ["deepspeed", '--master_port "$port"'] + (['--hostfile "$hostfile"'] if nodes > 1 else [])
    parts += [shlex.quote(a) for a in shlex.split(launcher_args)]  # after ours: a --master_port here wins
    return " ".join(parts + [shlex.quote(main_path), "--config", shlex.quote(config_path), "--run.resume", "auto"])


def _header(opts: SlurmOptions, logs: str, stage: str, indices: list[int], nodes: int, gpus: int,
            time: str | None, cpus: int | None, mem: str | None) -> list[str]:
    lines = [f"--job-name={opts.job_name}-{stage}",
             f"--array={array_spec(indices)}" + (f"%{opts.max_parallel}" if opts.max_parallel else ""),
             f"--nodes={nodes}", "--ntasks-per-node=1", f"--gpus-per-node={gpus}"]
    if nodes > 1:  # the hostfile's slots 0..N-1 are every GPU of a node: take whole nodes
        lines.append("--exclusive")
    lines += [f"--cpus-per-task={cpus}"] if cpus else []
    lines += [f"--mem={mem}"] if mem is not None else []
    lines += [f"--time={time}"] if time else []
    lines += [f"--partition={opts.partition}"] if opts.partition else []
    # per task: %a its index, %A the array job; quoted, as sbatch's parser ends an argument at whitespace or #
    lines += [f'--output="{logs}/{stage}_%a_%A.log"']
    lines += [directive(line) for line in opts.sbatch_lines]
    return [f"#SBATCH {d}" for d in lines]


def _case(script: str, commands: dict[int, str]) -> list[str]:
    body = [f"  {i}) {command} ;;" for i, command in sorted(commands.items())]
    return ['case "$SLURM_ARRAY_TASK_ID" in', *body,
            f'  *) echo "{script}: no run at array index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac"]


def train_script(opts: SlurmOptions, written_by: str, logs: str, commands: list[str]) -> str:
    """train.sbatch: array task i runs `commands[i]` (run i of sweep.json), resuming its run if killed."""
    lines = ["#!/usr/bin/env bash", written_by,
             f"# Training: {len(commands)} runs as one array, task i = run i of sweep.json (submit.sh submits the "
             "unfinished ones).", *_header(opts, logs, "train", list(range(len(commands))), opts.nodes,
                                           opts.gpus_per_node, opts.time, opts.cpus_per_task, opts.mem),
             "set -euo pipefail",
             "# array tasks that share a node need their own rendezvous port",
             "port=$((10000 + SLURM_JOB_ID % 20000))  # 10000-29999: below the ephemeral range"]
    if opts.nodes > 1:
        lines += [f"hostfile={shlex.quote(logs)}" + '"/train_${SLURM_ARRAY_TASK_ID}_${SLURM_ARRAY_JOB_ID}.hostfile"',
                  f'scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/\\$/ slots={opts.gpus_per_node}/" '
                  '> "$hostfile"']
    return "\n".join(lines + _case("train.sbatch", dict(enumerate(commands)))) + "\n"


def eval_script(opts: SlurmOptions, written_by: str, logs: str, stage: str, commands: dict[int, str]) -> str:
    """<stage>.sbatch: array task i runs `commands[i]`, scoring run i of sweep.json (one node)."""
    lines = ["#!/usr/bin/env bash", written_by,
             f"# Evaluation ({stage}): {len(commands)} runs, task i = run i of sweep.json, after training task i "
             "(submit.sh adds --dependency=aftercorr:<training job>).",
             *_header(opts, logs, stage, list(commands), 1, opts.eval_gpus or opts.gpus_per_node,
                      opts.eval_time or opts.time, opts.eval_cpus_per_task or opts.cpus_per_task,
                      opts.eval_mem if opts.eval_mem is not None else opts.mem),
             "set -euo pipefail"]
    return "\n".join(lines + _case(f"{stage}.sbatch", commands)) + "\n"


def _bash_array(name: str, items: dict[int, str]) -> str:
    return f"{name}=(" + " ".join(f"[{i}]={shlex.quote(v)}" for i, v in sorted(items.items())) + ")"


def submit_script(opts: SlurmOptions, written_by: str, out: str, logs: str, run_dirs: list[str],
                  eval_stages: dict[str, dict[int, str]]) -> str:
    """submit.sh: submits the unfinished training indices as one array, and per evaluation stage the
    unfinished evaluations as two arrays: those whose training it resubmits (same indices, aftercorr on the
    new training job) and those whose training has finished (no dependency)."""
    limit = f"%{opts.max_parallel}" if opts.max_parallel else ""
    names = ",".join(f"{opts.job_name}-{stage}" for stage in ["train", *eval_stages])
    lines = [
        "#!/usr/bin/env bash", written_by,
        "# Submits this sweep's unfinished work to Slurm as job arrays (array index = the run's position in",
        "# sweep.json); run it again after a time-out or a failure. Training is unfinished without <run>/final/",
        "# and resumes from the run's latest checkpoint; an evaluation is unfinished without a results_*.json in",
        "# its output folder. An evaluation whose training is submitted here waits for that training task",
        "# (aftercorr pairs task ids, so both arrays carry the same indices; Slurm cancels it if that task fails,",
        "# so a rerun finds nothing pending); the others start at once.",
        "set -euo pipefail",
        f"out={shlex.quote(out)}",
        f"mkdir -p {shlex.quote(logs)}",
        f"queued=$(squeue --noheader --user \"${{USER:-$(id -un)}}\" --name {names} --format '%i %j %T')",
        'if [ -n "$queued" ]; then',
        '  echo "submit.sh: jobs of this sweep are queued or running; let them end or scancel them, then run it'
        ' again:" >&2',
        '  echo "$queued" >&2',
        "  exit 1",
        "fi",
        "join() { local IFS=,; printf '%s' \"$*\"; }",
        "has_results() { [ -d \"$1\" ] && [ -n \"$(find \"$1\" -name 'results_*.json' -print -quit)\" ]; }",
        "submitted=0",
        _bash_array("run_dirs", dict(enumerate(run_dirs))),
        "retrain=()",
        "train=()",
        'for i in "${!run_dirs[@]}"; do',
        '  if [ ! -d "${run_dirs[$i]}/final" ]; then train+=("$i"); retrain[$i]=1; fi',
        "done",
        'if [ "${#train[@]}" -gt 0 ]; then',
        f'  train_job=$(sbatch --parsable --array="$(join "${{train[@]}}"){limit}" "$out/train.sbatch")',
        "  train_job=${train_job%%;*}  # --parsable prints <job id>[;<cluster>]",
        '  echo "training: job $train_job, array $(join "${train[@]}")"',
        "  submitted=1",
        "fi",
    ]
    for stage, results_dirs in eval_stages.items():
        lines += [
            _bash_array("results_dirs", results_dirs),
            "after=()",
            "now=()",
            'for i in "${!results_dirs[@]}"; do',
            '  if has_results "${results_dirs[$i]}"; then continue; fi',
            '  if [ -n "${retrain[$i]:-}" ]; then after+=("$i"); else now+=("$i"); fi',
            "done",
            'if [ "${#after[@]}" -gt 0 ]; then',
            f'  job=$(sbatch --parsable --array="$(join "${{after[@]}}"){limit}" '
            f'--dependency="aftercorr:$train_job" --kill-on-invalid-dep=yes "$out/{stage}.sbatch")',
            f'  echo "{stage}: job ${{job%%;*}}, array $(join "${{after[@]}}"), each after its training task"',
            "  submitted=1",
            "fi",
            'if [ "${#now[@]}" -gt 0 ]; then',
            f'  job=$(sbatch --parsable --array="$(join "${{now[@]}}"){limit}" "$out/{stage}.sbatch")',
            f'  echo "{stage}: job ${{job%%;*}}, array $(join "${{now[@]}}"), training already finished"',
            "  submitted=1",
            "fi",
        ]
    lines += ['if [ "$submitted" = 0 ]; then echo "nothing to submit: every run is trained and evaluated"; fi']
    return "\n".join(lines) + "\n"
