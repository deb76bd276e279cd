"""The task registry: the built-in tasks, registration rules, task options in the config, toy facts."""

from __future__ import annotations

import pytest

from dllm_jepa_train.config import ConfigError, load_config
from lm_eval_diffusion import task_registry
from lm_eval_diffusion.task_registry import TaskSpec


@pytest.fixture
def registry(monkeypatch):
    """The registry with the built-ins loaded; whatever a test registers is dropped afterwards."""
    task_registry.task_names()
    monkeypatch.setattr(task_registry, "_tasks", dict(task_registry._tasks))
    monkeypatch.setattr(task_registry, "_loaded_paths", dict(task_registry._loaded_paths))
    return task_registry


def _spec(name: str, load=None) -> TaskSpec:
    return TaskSpec(name=name, splits=("train",), load=load or (lambda split, root, options: [{"x": 1}]),
                    text=lambda doc: "q", target=lambda doc: "a")


def test_builtin_tasks_their_splits_and_sweep_defaults(registry):
    assert registry.task_names() == ("gsm8k", "spider", "nlrx", "django", "mmlu")
    assert registry.task_names(training_only=True) == ("gsm8k", "spider", "nlrx", "django")
    assert registry.all_splits() == ("train", "test", "validation")
    assert {n: registry.get_task(n).heldout_split for n in registry.task_names()} == {
        "gsm8k": "test", "spider": "validation", "nlrx": "validation", "django": "validation", "mmlu": "test"}
    assert {n: registry.get_task(n).eval_tasks[0] for n in registry.task_names()} == {
        "gsm8k": "gsm8k_dllm", "spider": "spider_exec", "nlrx": "nlrx_synth", "django": "django_code",
        "mmlu": "mmlu_500"}
    assert {n: [o.key for o in registry.get_task(n).data_options] for n in ("gsm8k", "spider", "nlrx")} == {
        "gsm8k": ["dev_rows"], "spider": ["spider_db_dir"], "nlrx": []}
    with pytest.raises(ValueError, match=r"unknown task 'squad'; expected one of \('gsm8k', 'spider'"):
        registry.get_task("squad")


def test_registration_rules(registry, tmp_path):
    with pytest.raises(ValueError, match="task name 'toy:x'"):
        registry.register_task(_spec("toy:x"))
    first = registry.register_task(_spec("extra"))
    assert first.origin == __file__ and registry.task_names()[-1] == "extra"
    registry.register_task(_spec("extra"))  # the same file again (a module imported twice): replaced
    module = tmp_path / "other.py"
    module.write_text("from lm_eval_diffusion.task_registry import TaskSpec, register_task\n"
                      "register_task(TaskSpec(name='extra', splits=('train',), load=lambda s, r, o: [],\n"
                      "                       text=str, target=str))\n")
    with pytest.raises(ValueError, match=r"task module .*other\.py failed to import: ValueError: task 'extra' is "
                                         r"already registered by .*test_task_registry\.py"):
        registry.load_task_modules([str(module)])
    with pytest.raises(ValueError, match=r"task 'gsm8k' is already registered by .*task_defs/gsm8k\.py"):
        registry.register_task(_spec("gsm8k"))


def test_task_modules_load_once_by_path(registry, tmp_path):
    module = tmp_path / "utils.py"
    module.write_text("from lm_eval_diffusion.task_registry import TaskSpec, register_task\n"
                      "COUNT = globals().get('COUNT', 0) + 1\n"
                      "register_task(TaskSpec(name='pathtask', splits=('train', 'dev'), load=lambda s, r, o: [],\n"
                      "                       text=str, target=str, eval_tasks=('pathtask_eval',)))\n")
    assert len(registry.load_task_modules([str(module)])) == 1
    assert registry.load_task_modules([str(module), str(tmp_path / ".." / tmp_path.name / "utils.py")]) == []
    assert registry.get_task("pathtask").heldout_split == "dev" and "dev" in registry.all_splits()


def test_task_options_are_checked_by_their_task():
    for args, message in [
        (["--data.source", "nlrx", "--data.dev_rows", "5"], r"data\.dev_rows: only for data\.source gsm8k; the other"),
        (["--data.split", "test", "--data.dev_rows", "5"], r"data\.dev_rows: only for data\.source gsm8k; only for "
                                                           r"split train"),
        (["--data.source", "gsm8k", "--data.spider_db_dir", "/db"], r"data\.spider_db_dir: only for data\.source "
                                                                    r"spider"),
        (["--data.split", "dev"], r"data\.split: 'dev' is not allowed; allowed values: train, test, validation"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, args)
    assert load_config(None, ["--data.source", "spider", "--data.spider_db_dir", "/db"]).data.spider_db_dir == "/db"
    assert load_config(None, ["--data.source", "toy:spider", "--data.spider_db_dir", "/db"])  # read as spider


def test_toy_plug_in_attaches_its_demo_defaults():
    from dllm_jepa_train import plugins
    from dllm_jepa_train.toy import TOY_DATA
    from dllm_jepa_train.toy.inputs import TASK_KEY, TOY_TASKS

    plugins.load_plugins()
    assert task_registry.tasks_with(TASK_KEY) == ("gsm8k", "spider", "nlrx", "django")
    assert {t: task_registry.extra(t, TASK_KEY) for t in TOY_TASKS} == TOY_TASKS
    assert TOY_DATA == tuple(TOY_TASKS) + ("text",)
    assert task_registry.extra("mmlu", TASK_KEY) is None
