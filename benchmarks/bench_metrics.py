"""Both metric benchmarks of the task suite in one run: Spider exec match over the 972 dev golds
(target < 30 s on one core) and NL-RX func + dfa match over the 2,500 test golds (target < 60 s).

    python benchmarks/bench_metrics.py --data-dir ../shared/data
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the two scripts beside this one

import bench_metrics_regex  # noqa: E402
import bench_metrics_sql  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the Spider benchmark, then the NL-RX one, with the same arguments; return both figure sets."""
    argv = sys.argv[1:] if argv is None else argv
    print("== Spider execution / exact match ==")
    spider = bench_metrics_sql.main(argv)
    print("\n== NL-RX func + dfa match ==")
    nlrx = bench_metrics_regex.main(argv)
    return {"spider": spider, "nlrx": nlrx}


if __name__ == "__main__":
    main()
