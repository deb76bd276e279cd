"""Throughput of the Spider SQL metrics over the 972 offline dev golds, each scored against itself.

Target: Spider 972 exec in under 30 s on one core. The process pins itself to one CPU where the OS allows.
Smallest run on a CPU (data from ../shared/data, $DLLM_JEPA_DATA, or --data-dir)::

    python benchmarks/bench_metrics_sql.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))  # run from a checkout without installing the package

from lm_eval_diffusion.metrics import sql as sqlm  # noqa: E402
from lm_eval_diffusion.metrics.sql import execution  # noqa: E402

TARGET_EXEC_S = 30.0
NUM_EXPECTED = 972


def default_data_dir() -> Path:
    """$DLLM_JEPA_DATA, else ../shared/data beside the project root."""
    return Path(os.environ.get("DLLM_JEPA_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def load_dev_with_db(data_dir: Path) -> list[tuple[str, str, Path]]:
    """(db_id, gold, database path) for every Spider dev question whose database is present."""
    dev_json = data_dir / "spider" / "dev.json"
    if not dev_json.is_file():
        raise SystemExit(f"Spider dev.json not found at {dev_json}; pass --data-dir or set DLLM_JEPA_DATA")
    items = []
    for ex in json.loads(dev_json.read_text()):
        db = data_dir / "spider" / "database" / ex["db_id"] / f"{ex['db_id']}.sqlite"
        if db.is_file():
            items.append((ex["db_id"], ex["query"], db))
    return items


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time exec_match and exact_match over every dev gold; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="folder holding spider/")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    num_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0

    items = load_dev_with_db(args.data_dir)
    if len(items) != NUM_EXPECTED:
        print(f"warning: {len(items)} dev questions have a database, expected {NUM_EXPECTED}", file=sys.stderr)

    execution._gold_result.cache_clear()  # cold cache: every gold is executed once, every prediction once
    start = time.perf_counter()
    num_exec_match = sum(sqlm.exec_match(gold, gold, db).match for _, gold, db in items)
    exec_s = time.perf_counter() - start

    start = time.perf_counter()
    num_exact = sum(sqlm.exact_match(gold, gold) for _, gold, _ in items)
    exact_s = time.perf_counter() - start

    start = time.perf_counter()
    schemas = {db_id: sqlm.read_schema(db) for db_id, _, db in items}
    num_exact_schema = sum(sqlm.exact_match(gold, gold, schemas[db_id]) for db_id, gold, _ in items)
    exact_schema_s = time.perf_counter() - start

    n = len(items)
    figures = {
        "num_queries": float(n),
        "num_cpus": float(num_cpus),
        "exec_s": exec_s,
        "exec_ms_per_query": 1e3 * exec_s / n,
        "exec_matched": float(num_exec_match),
        "exact_s": exact_s,
        "exact_ms_per_query": 1e3 * exact_s / n,
        "exact_matched": float(num_exact),
        "exact_with_schema_s": exact_schema_s,
        "exact_with_schema_matched": float(num_exact_schema),
        "target_exec_s": TARGET_EXEC_S,
        "meets_target": float(exec_s < TARGET_EXEC_S),
    }
    print(f"Spider dev golds with a database: {n}; CPUs used: {num_cpus}")
    print(f"exec_match : {exec_s:7.2f} s  {figures['exec_ms_per_query']:6.2f} ms/query  {num_exec_match}/{n} match")
    print(f"exact_match: {exact_s:7.2f} s  {figures['exact_ms_per_query']:6.2f} ms/query  {num_exact}/{n} match")
    print(f"exact_match with schema (incl. reading {len(schemas)} schemas): {exact_schema_s:.2f} s  "
          f"{num_exact_schema}/{n} match")
    verdict = "met" if exec_s < TARGET_EXEC_S else "MISSED"
    print(f"target: Spider {NUM_EXPECTED} exec in under {TARGET_EXEC_S:.0f} s on one core -> {verdict}")
    return figures


if __name__ == "__main__":
    main()
