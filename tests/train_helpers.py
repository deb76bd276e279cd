"""Small training data and command-line flags shared by the trainer tests (in-process and launcher)."""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "Tom has 3 apples and buys 4 more.", "SELECT count(*) FROM singer WHERE age > 20",
    "lines containing the word dog", "baz = foo ( bar )", "The quick brown fox jumps over the lazy dog.",
    "call the function foo with an argument bar", "How many apples does he have?", "0123456789",
]


def write_jsonl(path: Path, num_rows: int = 24) -> Path:
    """prompt/response rows of varied lengths (some longer than the tests' 48-token cap)."""
    rows = []
    for i in range(num_rows):
        prompt = " ".join(SENTENCES[j % len(SENTENCES)] for j in range(i, i + 1 + i % 3))
        rows.append({"prompt": f"Q{i}: {prompt}", "response": " " + SENTENCES[(i * 5) % len(SENTENCES)] * (1 + i % 2)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def flags(ckpt: Path, jsonl: Path, out: Path, *extra: str, engine: str = "torch") -> list[str]:
    """Overrides for a small fp32 run on `ckpt` and `jsonl` writing to `out`."""
    return ["--model.pretrained", str(ckpt), "--data.source", "jsonl", "--data.path", str(jsonl),
            "--data.max_length", "48", "--run.engine", engine, "--run.precision", "fp32",
            "--run.output_dir", str(out), "--optim.lr", "1e-3", "--optim.warmup_ratio", "0",
            "--optim.max_steps", "2", "--jepa.collapse_every", "1", *extra]
