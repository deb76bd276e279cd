"""The lm-eval tasks on the real data: they build, prompt 4-shot from train, score hand-made outputs, run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import shared_data_or_skip
from lm_eval_diffusion import prompts, task_data, tasks_dir

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.model import LM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

GENERATION_TASKS = {"gsm8k_dllm": "gsm8k", "spider_exec": "spider", "nlrx_synth": "nlrx", "django_code": "django"}
EVAL_SIZES = {"gsm8k_dllm": 1319, "spider_exec": 972, "nlrx_synth": 2500, "django_code": 1805}
# Paper, A.10: GSM8K 256, Django and NL-RX 512; Spider 512 is our choice (the paper gives none).
MAX_GEN_TOKS = {"gsm8k_dllm": 256, "spider_exec": 512, "nlrx_synth": 512, "django_code": 512}
RAW_TASKS = ("spider_exec", "nlrx_synth", "django_code")  # generate to end of text; the metric cleans
# The first line of each example: splitting a k-shot prompt before these recovers the examples.
EXAMPLE_START = {"gsm8k": "Question: ", "spider": "Database: ", "nlrx": "Description: ", "django": "Pseudo-code: "}


@pytest.fixture(scope="module")
def data_root() -> Path:
    return shared_data_or_skip()


@pytest.fixture(scope="module")
def task_manager(data_root) -> TaskManager:
    # include_defaults=False: indexing lm-eval's ~10k built-in YAMLs costs ~9 s and tests nothing here.
    return TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(data_root)})


@pytest.fixture(scope="module")
def built(task_manager) -> dict:
    """The `dllm_jepa` group's tasks, built once: {task name: ConfigurableTask}."""
    loaded = task_manager.load(["dllm_jepa"])
    assert set(loaded["groups"]) == {"dllm_jepa"}
    for task in loaded["tasks"].values():
        task.set_fewshot_seed(1234)
    return loaded["tasks"]


def test_plain_task_manager_finds_the_tasks_through_the_hook():
    import lm_eval_diffusion_hook  # noqa: F401  (installed by the wheel's .pth in every process)

    names = TaskManager(include_defaults=False).all_tasks
    assert set(GENERATION_TASKS) | {"mmlu_500", "dllm_jepa"} <= set(names)


def test_every_generation_task_builds_with_its_config(built):
    assert set(built) == set(GENERATION_TASKS)
    for name, task in built.items():
        assert task.config.num_fewshot == 4, name
        assert task.OUTPUT_TYPE == "generate_until"
        assert task.config.generation_kwargs["max_gen_toks"] == MAX_GEN_TOKS[name]
        assert task.config.generation_kwargs["do_sample"] is False
        assert len(task.eval_docs) == EVAL_SIZES[name], name
        assert task.config.target_delimiter == prompts.TARGET_DELIMITER
        assert task.config.fewshot_delimiter == prompts.FEWSHOT_DELIMITER
    assert built["gsm8k_dllm"].config.generation_kwargs["until"] == ["Question:", "</s>", "<|im_end|>"]
    assert [f.name for f in built["gsm8k_dllm"]._filters] == ["strict-match", "flexible-extract"]


def _resolved_tasks(task_manager, names: list[str]) -> dict:
    """{task name: task} as `lm_eval.evaluator` resolves them (get_task_dict), groups flattened."""
    from lm_eval.tasks import get_task_dict

    out = {}

    def walk(tree: dict) -> None:
        for value in tree.values():
            if isinstance(value, dict):
                walk(value)
            else:
                out[value.config.task] = value

    walk(get_task_dict(names, task_manager))
    return out


def test_resolved_configs_generate_raw_to_end_of_text(task_manager):
    resolved = _resolved_tasks(task_manager, ["dllm_jepa", "dllm_jepa_0shot"])
    assert set(resolved) == set(GENERATION_TASKS) | {f"{n}_0shot" for n in GENERATION_TASKS}
    for name, task in resolved.items():
        base = name.removesuffix("_0shot")
        kwargs = task.config.generation_kwargs
        assert kwargs["max_gen_toks"] == MAX_GEN_TOKS[base], name
        assert kwargs["max_gen_toks"] % 128 == 0  # a whole number of 128-token blocks: no rounding warning
        if base in RAW_TASKS:
            assert kwargs["until"] == [], (name, kwargs["until"])
        # Nothing that could cut a generation at a newline before the metric sees it.
        assert not any("\n" in stop for stop in kwargs["until"]), (name, kwargs["until"])
    versions = {name: task.config.metadata["version"] for name, task in resolved.items()}
    # Metric meaning changed in 2.0 (raw generations); NL-RX's func_match again in 3.0; Spider 2.1 adds
    # two metrics.
    assert {n: versions[n] for n in RAW_TASKS} == {"spider_exec": 2.1, "nlrx_synth": 3.0, "django_code": 2.0}
    assert versions["spider_exec"] == versions["spider_exec_0shot"] == 2.1
    assert versions["gsm8k_dllm"] == 1.0


def test_lm_eval_defaults_until_to_the_fewshot_delimiter_when_the_key_is_missing():
    """Why the YAMLs write `until: []`: without the key lm-eval 0.4.13 stops every generation at "\n\n"."""
    from lm_eval.api.task import TaskConfig

    missing = TaskConfig(task="t", output_type="generate_until", fewshot_delimiter="\n\n",
                         generation_kwargs={"max_gen_toks": 512})
    explicit = TaskConfig(task="t", output_type="generate_until", fewshot_delimiter="\n\n",
                          generation_kwargs={"until": [], "max_gen_toks": 512})
    assert missing.generation_kwargs["until"] == ["\n\n"]
    assert explicit.generation_kwargs["until"] == []


def test_zero_shot_variants_prompt_exactly_as_the_trainer_trains(task_manager):
    loaded = task_manager.load(["dllm_jepa_0shot"])
    assert set(loaded["groups"]) == {"dllm_jepa_0shot"}
    for name, task_key in GENERATION_TASKS.items():
        task = loaded["tasks"][f"{name}_0shot"]
        assert task.config.num_fewshot == 0
        assert len(task.eval_docs) == EVAL_SIZES[name]
        for doc in list(task.eval_docs)[:3]:
            prompt, response = prompts.training_pair(task_key, doc)
            assert task.fewshot_context(doc, num_fewshot=task.config.num_fewshot) == prompt
            assert task.config.target_delimiter + task.doc_to_target(doc) == response


def _split_examples(prompt: str, start: str) -> list[str]:
    """A k-shot prompt cut into its k solved examples (each with its trailing delimiter) and the query."""
    parts = prompt.split(prompts.FEWSHOT_DELIMITER + start)
    pieces = [parts[0]] + [start + p for p in parts[1:]]
    return [p + prompts.FEWSHOT_DELIMITER for p in pieces[:-1]] + [pieces[-1]]


def _solved(task: str, doc: dict) -> str:
    text, response = prompts.training_pair(task, doc)
    return text + response + prompts.FEWSHOT_DELIMITER


@pytest.mark.parametrize("name", sorted(GENERATION_TASKS))
def test_prompts_are_4_shot_from_the_few_shot_pool_never_the_doc(built, data_root, name):
    task_key, task = GENERATION_TASKS[name], built[name]
    # Offline Spider has no train_spider.json, so its pool is dev (the doc itself excluded).
    pool_split = "validation" if task_key == "spider" else "train"
    pool = {_solved(task_key, d) for d in task_data.load_docs(task_key, pool_split, data_root)}
    for doc in list(task.eval_docs)[:5]:
        prompt = task.fewshot_context(doc, num_fewshot=4)
        *shots, query = _split_examples(prompt, EXAMPLE_START[task_key])
        assert query == prompts.doc_to_text(task_key, doc)
        assert len(shots) == 4
        assert all(shot in pool for shot in shots)
        assert _solved(task_key, doc) not in shots


def test_zero_shot_prompt_is_the_training_pair(built):
    for name, task_key in GENERATION_TASKS.items():
        task = built[name]
        doc = task.eval_docs[0]
        prompt, response = prompts.training_pair(task_key, doc)
        assert task.fewshot_context(doc, num_fewshot=0) == prompt
        assert task.config.target_delimiter + task.doc_to_target(doc) == response


def test_spider_offline_shots_exclude_the_doc_even_from_a_tiny_pool(tmp_path, data_root):
    # With 5 dev questions and 4 shots, a doc would be its own shot 4 times in 5 without exclusion.
    dev = [q for q in json.loads((data_root / "spider" / "dev.json").read_text()) if q["db_id"] == "concert_singer"][:5]
    (tmp_path / "spider").mkdir()
    (tmp_path / "spider" / "dev.json").write_text(json.dumps(dev))
    manager = TaskManager(
        include_path=str(tasks_dir()),
        include_defaults=False,
        metadata={"data_dir": str(tmp_path), "spider_db_dir": str(data_root / "spider" / "database")},
    )
    task = manager.load(["spider_exec"])["tasks"]["spider_exec"]
    task.set_fewshot_seed(0)
    for doc in task.eval_docs:
        *shots, query = _split_examples(task.fewshot_context(doc, num_fewshot=4), "Database: ")
        assert len(shots) == 4
        assert _solved("spider", doc) not in shots
        assert query == prompts.doc_to_text("spider", doc)


def test_missing_data_fails_when_the_task_is_built(tmp_path):
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(tmp_path)})
    with pytest.raises(task_data.TaskDataError, match="nlrx data not found"):
        manager.load(["nlrx_synth"])


# ------------------------------------------------------------------------ scoring hand-made outputs


class ScriptedLM(LM):
    """An LM whose generations are a function of the doc, and which prefers one choice by its index."""

    def __init__(self, respond=None, choose=None) -> None:
        super().__init__()
        self.respond = respond
        self.choose = choose
        self.contexts: list[str] = []

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        self.contexts += [r.args[0] for r in requests]
        return [self.respond(r.doc_id, r.doc) for r in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return [(0.0 if r.args[1] == " " + self.choose(r.doc) else -1.0, False) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError


def _evaluate(lm, task_manager, task: str, limit: int) -> dict:
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=task_manager, log_samples=True)
    return out


def _gsm8k_output(i: int, doc: dict) -> str:
    gold = doc["answer"].rsplit("#### ", 1)[-1].replace(",", "")
    wrong_then_right = f"#### {int(gold) + 1}\nNo: {gold}"  # strict takes the first, flexible the last
    return [f"Reasoning.\n#### {gold}", f"The answer is {gold}.", "I do not know.", wrong_then_right][i]


def _spider_output(i: int, doc: dict) -> str:
    return [doc["query"], doc["query"] + "; DROP TABLE singer", "SELEC nothing FROM", "SELECT 'no such value'"][i]


def _nlrx_output(i: int, doc: dict) -> str:
    return [doc["regex"] + "\nDescription: more", f"({doc['regex']})", "(", f"~({doc['regex']})"][i]


def _django_output(i: int, doc: dict) -> str:
    return [doc["code"], doc["code"] + "\nreturn x", "zzz_not_code_at_all", "  " + doc["code"] + "\n"][i]


EXPECTED = {
    "gsm8k_dllm": (_gsm8k_output, {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.75}),
    "spider_exec": (
        _spider_output,
        {"exec_match,none": 0.5, "exec_match_semicolon,none": 0.5, "exec_match_raw,none": 0.25,
         "exact_match,none": 0.5, "exact_match_raw,none": 0.25, "exec_error,none": 0.25},
    ),
    "nlrx_synth": (
        _nlrx_output,
        {"exact_match,none": 0.25, "func_match,none": 0.5, "func_match_targeted,none": 0.5, "dfa_match,none": 0.5,
         "startswith_match,none": 0.25, "stop_artifact,none": 0.25},
    ),
    "django_code": (
        _django_output,
        {"exact_match,none": 0.5, "ws_prefix_match,none": 0.75, "stop_artifact,none": 0.25, "content_error,none": 0.25},
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_process_results_on_hand_made_outputs(task_manager, name):
    respond, expected = EXPECTED[name]
    out = _evaluate(ScriptedLM(respond=respond), task_manager, name, limit=4)
    metrics = out["results"][name]
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), (name, key, metrics)


def test_num_fewshot_0_on_the_4_shot_tasks_prompts_with_the_training_prompt(task_manager):
    lm = ScriptedLM(respond=lambda i, doc: "x")
    out = lm_eval.simple_evaluate(model=lm, tasks=["dllm_jepa"], num_fewshot=0, limit=2,
                                  task_manager=task_manager, log_samples=True)
    assert {name: out["n-shot"][name] for name in GENERATION_TASKS} == {name: 0 for name in GENERATION_TASKS}
    for name, task_key in GENERATION_TASKS.items():
        docs = {s["doc_id"]: s["doc"] for s in out["samples"][name]}
        assert {prompts.training_pair(task_key, doc)[0] for doc in docs.values()} <= set(lm.contexts)
    assert len(lm.contexts) == 2 * len(GENERATION_TASKS)


def test_django_process_results_is_the_papers_partition(task_manager):
    task = _resolved_tasks(task_manager, ["django_code"])["django_code"]
    golds = [doc["code"] for doc in task.eval_docs if " " in doc["code"]][:20]
    assert len(golds) == 20
    for gold in golds:
        cases = {
            gold: (1, 1, 0, 0),  # (exact_match, ws_prefix_match, stop_artifact, content_error)
            gold + "\n" + "return self . value": (0, 1, 1, 0),  # Table 5: correct code + trailing tokens
            gold.replace(" ", "  "): (0, 1, 1, 0),  # whitespace-only difference: documented as stop_artifact
            "zzz_wrong = 1": (0, 0, 0, 1),
        }
        for output, (exact, prefix, stop, content) in cases.items():
            scores = task.process_results(task.eval_docs[0] | {"code": gold}, [output])
            assert scores == {"exact_match": exact, "ws_prefix_match": prefix, "stop_artifact": stop,
                              "content_error": content}, (gold, output, scores)
            assert scores["exact_match"] + scores["stop_artifact"] + scores["content_error"] == 1
            assert scores["exact_match"] + scores["stop_artifact"] == scores["ws_prefix_match"]


def test_spider_process_results_scores_each_cleaning(task_manager):
    task = _resolved_tasks(task_manager, ["spider_exec"])["spider_exec"]
    names = ("exec_match", "exec_match_semicolon", "exec_match_raw", "exact_match", "exact_match_raw", "exec_error")
    for doc in list(task.eval_docs)[:10]:
        gold = doc["query"]
        assert ";" not in gold
        cases = {  # output: scores in the order of `names`
            gold: (1, 1, 1, 1, 1, 0),
            gold + ";": (1, 1, 1, 1, 1, 0),  # one statement with its terminator: raw runs and parses it
            gold + "; DROP TABLE x": (1, 1, 0, 1, 0, 0),
            gold + ";\nThis query counts the rows asked for.": (1, 1, 0, 1, 0, 0),
            # a 4-shot base model starting the next example: no `;`, so A.9's literal cut keeps it
            gold + "\n\nDatabase: x\nQuestion: y": (1, 0, 0, 1, 0, 0),
            "```sql\n" + gold + "\n```\nThis query; answers it.": (1, 1, 0, 1, 0, 0),
        }
        for output, expected in cases.items():
            scores = task.process_results(doc, [output])
            assert scores == dict(zip(names, map(float, expected))), (output, scores)


def test_spider_tasks_share_the_metrics_and_version(task_manager):
    # The 0-shot and demo tasks `include` spider_exec.yaml: its metric list and version reach them.
    configs = {name: task_manager.task_index[name].cfg for name in ("spider_exec", "spider_exec_0shot", "spider_exec_demo")}
    for name, cfg in configs.items():
        assert cfg["metadata"]["version"] == 2.1, name
        assert cfg["process_results"].endswith("spider_exec/utils.process_results"), name
        assert [m["metric"] for m in cfg["metric_list"]] == [
            "exec_match", "exec_match_semicolon", "exec_match_raw", "exact_match", "exact_match_raw", "exec_error"
        ], name


def test_nlrx_stop_artifact_is_a_correct_first_line_with_more_after(task_manager):
    task = _resolved_tasks(task_manager, ["nlrx_synth"])["nlrx_synth"]
    doc = task.eval_docs[0]
    gold = doc["regex"]
    cases = {  # output: (exact_match, dfa_match, stop_artifact, startswith_match)
        gold: (1, 1, 0, 1),
        f"  {gold}  \n\n": (1, 1, 0, 1),  # surrounding whitespace is not trailing text
        f"{gold}\nDescription: lines with a vowel": (1, 1, 1, 1),
        f"({gold})\n(": (0, 1, 1, 0),  # same language, other spelling, then more text
        f"~({gold})\n{gold}": (0, 0, 0, 0),  # wrong first line: a content error, not a stop artifact
        f"{gold}|zzz": (0, 0, 0, 1),  # startswith_match reads the raw text (this gold rejects "zzz")
    }
    for output, (exact, dfa, stop, startswith) in cases.items():
        scores = task.process_results(doc, [output])
        got = (scores["exact_match"], scores["dfa_match"], scores["stop_artifact"], scores["startswith_match"])
        assert got == (exact, dfa, stop, startswith), output
        # Where dfa_match holds, both functional metrics hold too.
        assert scores["func_match"] >= dfa and scores["func_match_targeted"] >= dfa, output


# ------------------------------------------------------------------------------------------- MMLU


@pytest.fixture(scope="module")
def mmlu_manager(tmp_path_factory) -> TaskManager:
    root = tmp_path_factory.mktemp("mmlu_data")
    (root / "mmlu").mkdir()
    rows = [
        {"question": f"Q{s}{i}", "subject": s, "choices": ["w", "x", "y", "z"], "answer": i % 4}
        for s in ("anatomy", "virology")
        for i in range(4)
    ]
    (root / "mmlu" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(root)})


def test_mmlu_500_from_a_local_file(mmlu_manager):
    task = mmlu_manager.load(["mmlu_500"])["tasks"]["mmlu_500"]
    assert task.OUTPUT_TYPE == "multiple_choice" and task.config.num_fewshot == 0
    assert len(task.eval_docs) == 8  # fewer than 500: all of them
    doc = task.eval_docs[0]
    assert task.fewshot_context(doc, num_fewshot=0) == prompts.doc_to_text("mmlu", doc)
    perfect = _evaluate(ScriptedLM(choose=lambda d: "ABCD"[d["answer"]]), mmlu_manager, "mmlu_500", limit=None)
    assert perfect["results"]["mmlu_500"]["acc,none"] == 1.0
    always_a = _evaluate(ScriptedLM(choose=lambda d: "A"), mmlu_manager, "mmlu_500", limit=None)
    assert always_a["results"]["mmlu_500"]["acc,none"] == pytest.approx(0.25)


def test_mmlu_500_task_on_57_generated_subjects_in_the_release_layout(tmp_path):
    from collections import Counter

    from mmlu_helpers import MMLU_SUBJECTS, write_mmlu_release

    write_mmlu_release(tmp_path, {s: 100 + i for i, s in enumerate(MMLU_SUBJECTS)})
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(tmp_path)})
    task = manager.load(["mmlu_500"])["tasks"]["mmlu_500"]
    assert task.config.metadata["version"] == 2.0
    docs = list(task.eval_docs)
    assert len(docs) == 500 and docs == task_data.load_mmlu_subset(tmp_path)
    assert sorted(Counter(Counter(d["subject"] for d in docs).values()).items()) == [(8, 13), (9, 44)]


# ------------------------------------------------------------------------------------- end to end


def test_generation_tasks_end_to_end_with_the_tiny_diffusion_model(task_manager, tiny_checkpoints):
    pytest.importorskip("lm_eval_diffusion.harness")
    import lm_eval_diffusion_hook  # noqa: F401  (registers llada_diffusion, as the installed .pth does)

    out = lm_eval.simple_evaluate(
        model="llada_diffusion",
        model_args={
            "pretrained": str(tiny_checkpoints["llada"]),
            "steps": 8,
            "gen_length": 16,
            "block_length": 8,
            "device": "cpu",
        },
        tasks=["dllm_jepa"],
        limit=2,
        task_manager=task_manager,
        log_samples=True,
    )
    metric_keys = {name: set(expected) for name, (_, expected) in EXPECTED.items()}
    for name, keys in metric_keys.items():
        metrics = out["results"][name]
        for key in keys:
            assert 0.0 <= metrics[key] <= 1.0 and not math.isnan(metrics[key]), (name, key)
        samples = out["samples"][name]
        assert sorted({s["doc_id"] for s in samples}) == [0, 1]  # gsm8k logs each doc once per filter
        context = samples[0]["arguments"][0][0]
        assert context.count(EXAMPLE_START[GENERATION_TASKS[name]]) >= 5  # 4 shots + the query
