"""Task data loaders and prompt text: split sizes on the real data, doc keys, errors that say what to do."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, shared_data_or_skip
from lm_eval_diffusion import prompts, task_data
from mmlu_helpers import MMLU_SUBJECTS, write_mmlu_release

DOC_KEYS = {
    "gsm8k": {"question", "answer"},
    "spider": {"db_id", "db_path", "schema", "question", "query"},
    "nlrx": {"line", "description", "regex"},
    "django": {"line", "anno", "code"},
}


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv(task_data.DATA_ENV, raising=False)


@pytest.mark.parametrize(
    ("task", "sizes"),
    [
        ("gsm8k", {"train": 7473, "test": 1319}),
        ("nlrx", {"train": 6500, "validation": 1000, "test": 2500}),
        ("django", {"train": 16000, "validation": 1000, "test": 1805}),
    ],
)
def test_split_sizes_on_real_data(task, sizes):
    root = shared_data_or_skip()
    for split, size in sizes.items():
        docs = task_data.load_docs(task, split, root)
        assert len(docs) == size, (task, split)
        assert set(docs[0]) == DOC_KEYS[task]
        json.dumps(docs)  # lm-eval logs docs


def test_spider_dev_skips_questions_without_database(caplog):
    root = shared_data_or_skip("spider")
    with caplog.at_level(logging.WARNING, logger="lm_eval_diffusion.task_data"):
        docs = task_data.load_docs("spider", "validation", root.parent)
    assert len(docs) == 972
    assert "skipped 62 of 1034" in caplog.text and "wta_1" in caplog.text
    assert {d["db_id"] for d in docs}.isdisjoint({"wta_1"})
    doc = docs[0]
    assert set(doc) == DOC_KEYS["spider"]
    assert Path(doc["db_path"]).is_file()
    assert doc["query"] == "SELECT count(*) FROM singer"
    # Schema text comes from the sqlite file: every table line, with its columns.
    assert "singer(Singer_ID, Name, Country, Song_Name, Song_release_year, Age, Is_male)" in doc["schema"].split("\n")
    assert max(len(json.dumps(d)) for d in docs) < 4000  # small enough to log per sample


def test_spider_db_dir_override_and_missing_train(tmp_path):
    root = shared_data_or_skip()
    empty_db_dir = tmp_path / "dbs"
    empty_db_dir.mkdir()
    with pytest.raises(task_data.TaskDataError, match="none of the 1034 questions has its database"):
        task_data.load_docs("spider", "validation", root, spider_db_dir=empty_db_dir)
    with pytest.raises(task_data.TaskDataError, match="train_spider.json"):
        task_data.load_docs("spider", "train", root)


def test_spider_hub_path_needs_a_database_folder():
    with pytest.raises(task_data.TaskDataError, match="spider_db_dir"):
        task_data.load_docs("spider", "validation", "hub")


def test_nlrx_split_is_seeded_disjoint_and_complete():
    first = task_data.nlrx_split_indices(10_000)
    assert first == task_data.nlrx_split_indices(10_000)
    assert [len(first[s]) for s in ("train", "validation", "test")] == [6500, 1000, 2500]
    all_lines = first["train"] + first["validation"] + first["test"]
    assert sorted(all_lines) == list(range(10_000))
    assert first != task_data.nlrx_split_indices(10_000, seed=task_data.NLRX_SPLIT_SEED + 1)


def test_nlrx_docs_are_the_aligned_lines():
    root = shared_data_or_skip("nlrx")
    sources = (root / "synth_src.txt").read_text(encoding="utf-8").split("\n")
    targets = (root / "synth_targ.txt").read_text(encoding="utf-8").split("\n")
    for doc in task_data.load_docs("nlrx", "test", root.parent)[:50]:
        assert doc["description"] == sources[doc["line"]].strip()
        assert doc["regex"] == targets[doc["line"]].strip()


def test_django_split_is_by_line_order():
    root = shared_data_or_skip("django")
    test_docs = task_data.load_docs("django", "test", root.parent)
    assert [test_docs[0]["line"], test_docs[-1]["line"]] == [17000, 18804]
    assert test_docs[0]["code"] == "params = [ ]"  # leading indentation stripped
    assert test_docs[0]["anno"] == "params is an empty list,"
    # A file of another length (a synthetic stand-in) is cut at the same fractions.
    assert [len(task_data.django_split_range(s, 3000)) for s in ("train", "validation", "test")] == [2553, 159, 288]


def test_unknown_task_or_split_raises():
    with pytest.raises(ValueError, match="unknown task"):
        task_data.load_docs("squad", "test")
    with pytest.raises(ValueError, match="splits are"):
        task_data.load_docs("gsm8k", "validation")


def test_missing_local_data_names_what_to_download(tmp_path):
    with pytest.raises(task_data.TaskDataError, match="deep-regex.*synth_src.txt"):
        task_data.load_docs("nlrx", "test", tmp_path)
    with pytest.raises(task_data.TaskDataError, match="no Hugging Face hub copy"):
        task_data.load_docs("nlrx", "test")
    with pytest.raises(task_data.TaskDataError, match="does not exist"):
        task_data.load_docs("gsm8k", "test", tmp_path / "nope")


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    assert task_data.resolve_data_dir() is None
    monkeypatch.setenv(task_data.DATA_ENV, str(tmp_path))
    assert task_data.resolve_data_dir() == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert task_data.resolve_data_dir(other) == other
    assert task_data.resolve_data_dir("hub") is None


@pytest.mark.subprocess
def test_hub_failure_offline_gives_the_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != task_data.DATA_ENV}
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(PROJECT_ROOT))
    code = "from lm_eval_diffusion.task_data import load_docs; load_docs('gsm8k', 'test')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("lm_eval_diffusion.task_data.TaskDataError: could not load gsm8k split 'test'")
    assert "openai/gsm8k" in last_line and "DLLM_JEPA_DATA" in last_line


# ------------------------------------------------------------------------------------------ MMLU


def _write_mmlu(path: Path, subjects: dict[str, int], fmt: str) -> list[dict]:
    rows = [
        {"question": f"{s} question {i}?", "subject": s, "choices": [f"{c}{i}" for c in "abcd"], "answer": i % 4}
        for s, n in subjects.items()
        for i in range(n)
    ]
    path.mkdir(parents=True)
    if fmt == "jsonl":
        (path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        import csv

        with (path / "test.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**r, "choices": json.dumps(r["choices"])} for r in rows)
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_mmlu_local_file(tmp_path, fmt):
    rows = _write_mmlu(tmp_path / "mmlu", {"anatomy": 3, "virology": 2}, fmt)
    docs = task_data.load_docs("mmlu", "test", tmp_path)
    assert docs == rows


def test_mmlu_release_layout_is_read_with_subjects_from_the_file_names(tmp_path):
    write_mmlu_release(tmp_path, {"virology": 2, "anatomy": 1})
    docs = task_data.load_docs("mmlu", "test", tmp_path)
    choices = lambda i: [f"w{i}", "x, y", f'"z{i}"', "v"]  # noqa: E731
    assert docs == [
        {"question": "anatomy, question 0: why?", "subject": "anatomy", "choices": choices(0), "answer": 0},
        {"question": "virology, question 0: why?", "subject": "virology", "choices": choices(0), "answer": 0},
        {"question": "virology, question 1: why?", "subject": "virology", "choices": choices(1), "answer": 1},
    ]


def test_mmlu_500_is_8_or_9_per_subject_and_the_same_every_time(tmp_path):
    assert len(MMLU_SUBJECTS) == 57 == len(set(MMLU_SUBJECTS))
    sizes = {s: 100 + 37 * i for i, s in enumerate(MMLU_SUBJECTS)}  # uneven, like the real test set
    write_mmlu_release(tmp_path, sizes)
    subset = task_data.load_mmlu_subset(tmp_path)
    assert len(subset) == 500
    counts = Counter(d["subject"] for d in subset)
    assert set(counts) == set(MMLU_SUBJECTS)
    assert sorted(Counter(counts.values()).items()) == [(8, 13), (9, 44)]  # 13 x 8 + 44 x 9 = 500
    assert subset == task_data.load_mmlu_subset(tmp_path)
    assert len({d["question"] for d in subset}) == 500
    # Not proportional to size: the largest subject (2,172 questions) gets at most one more than the smallest (100).
    assert abs(counts[MMLU_SUBJECTS[-1]] - counts[MMLU_SUBJECTS[0]]) <= 1
    other_seed = task_data.load_mmlu_subset(tmp_path, seed=task_data.MMLU_SUBSET_SEED + 1)
    assert other_seed != subset
    assert Counter(Counter(d["subject"] for d in other_seed).values()) == {9: 44, 8: 13}


def test_mmlu_500_items_do_not_depend_on_subject_order_or_other_subjects(tmp_path):
    write_mmlu_release(tmp_path / "a", {s: 120 for s in MMLU_SUBJECTS})
    subset = task_data.load_mmlu_subset(tmp_path / "a")
    rows = task_data.load_docs("mmlu", "test", tmp_path / "a")
    shuffled = tmp_path / "b" / "mmlu"
    shuffled.mkdir(parents=True)
    # Another subject order, each subject's questions in release order (stable sort).
    reordered = sorted(rows, key=lambda r: r["subject"][::-1])
    assert [r["subject"] for r in reordered] != [r["subject"] for r in rows]
    (shuffled / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reordered), encoding="utf-8")

    def key(doc: dict) -> tuple[str, str]:
        return doc["subject"], doc["question"]

    assert sorted(task_data.load_mmlu_subset(tmp_path / "b"), key=key) == sorted(subset, key=key)
    # Within a subject the draw depends on that subject's questions only.
    anatomy = [d for d in subset if d["subject"] == "anatomy"]
    grown = task_data.balanced_sample(rows + [{**rows[0], "subject": "virology", "question": "extra"}], 500)
    assert [d for d in grown if d["subject"] == "anatomy"] == anatomy


def test_balanced_sample_small_cases():
    docs = [{"subject": s, "i": i} for i, s in enumerate("aaaaaaaabbbcc")]
    for seed in range(5):
        picked = task_data.balanced_sample(docs, 5, seed=seed)
        assert sorted(Counter(d["subject"] for d in picked).values()) == [1, 2, 2]  # 5 = 3 x 1 + 2 extra
    assert [d["i"] for d in picked] == sorted(d["i"] for d in picked)  # input order kept
    assert task_data.balanced_sample(docs, 50) == docs
    with pytest.raises(ValueError, match="cannot cover 3"):
        task_data.balanced_sample(docs, 2)
    with pytest.raises(ValueError, match="fewer docs than their share"):
        task_data.balanced_sample(docs, 9)  # 3 each, but c has two


def test_mmlu_bad_rows_and_ambiguous_files(tmp_path):
    folder = tmp_path / "mmlu"
    folder.mkdir()
    two_choices = {"question": "q", "subject": "s", "choices": ["a", "b"], "answer": 0}
    (folder / "test.jsonl").write_text(json.dumps(two_choices))
    with pytest.raises(task_data.TaskDataError, match="need 4 choices"):
        task_data.load_docs("mmlu", "test", tmp_path)
    (folder / "test.csv").write_text("question\n")
    with pytest.raises(task_data.TaskDataError, match="exactly one of"):
        task_data.load_docs("mmlu", "test", tmp_path)


# --------------------------------------------------------------------------------------- prompts

EXAMPLES = {
    "gsm8k": (
        {"question": "What is 2+2?", "answer": "2+2=4\n#### 4"},
        "Question: What is 2+2?\nAnswer:",
        " 2+2=4\n#### 4",
    ),
    "spider": (
        {
            "db_id": "pets",
            "db_path": "/x.sqlite",
            "schema": "pet(id, name)",
            "question": "How many pets?",
            "query": "SELECT count(*) FROM pet",
        },
        "Database: pets\npet(id, name)\nQuestion: How many pets?\nSQL:",
        " SELECT count(*) FROM pet",
    ),
    "nlrx": (
        {"line": 0, "description": "lines with a vowel", "regex": ".*[AEIOUaeiou].*"},
        "Description: lines with a vowel\nRegex:",
        " .*[AEIOUaeiou].*",
    ),
    "django": ({"line": 0, "anno": "return x.", "code": "return x"}, "Pseudo-code: return x.\nPython:", " return x"),
    "mmlu": (
        {"question": " Why? ", "subject": "high_school_physics", "choices": ["w", "x", "y", "z"], "answer": 2},
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Why?\nA. w\nB. x\nC. y\nD. z\nAnswer:",
        " C",
    ),
}


@pytest.mark.parametrize("task", sorted(EXAMPLES))
def test_prompt_format(task):
    doc, text, response = EXAMPLES[task]
    assert prompts.training_pair(task, doc) == (text, response)
    assert prompts.doc_to_text(task, doc) == text
    assert prompts.TARGET_DELIMITER + prompts.doc_to_target(task, doc) == response


def test_prompts_cover_every_generation_task_and_reject_others():
    assert set(task_data.TASKS) <= set(EXAMPLES)
    with pytest.raises(ValueError, match="unknown task"):
        prompts.doc_to_text("squad", {})
