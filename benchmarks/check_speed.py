"""The static check of a step's sources: in the trainer (`_check_text`, as before red team 13) against the
checker process that `check_source` now uses, for the same number of distinct realistic sources (a short
strategy, each with its own comment so that no verdict is cached). Reports the wall time and the trainer's own
CPU time per check, the median of `--repeats` rounds.

    .venv/bin/python benchmarks/check_speed.py --sources 256 --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import uuid

from helpers.config import SandboxConfig
from helpers.sandbox_checks import _check_text, check_source

SOURCE = """import math
def strategy(board):
    # {tag}
    best, score = 'a', -1
    for key in 'éuai':
        s = sum(v for row in board for v in row if v) + len(key)
        if s > score:
            best, score = key, s
    return best
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    allowed = tuple(SandboxConfig().allowed_imports)
    check_source(SOURCE.format(tag="start"))  # the checker is running
    ways = {"in the trainer": lambda source: _check_text(source, allowed), "checker process": check_source}
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for _ in range(options.repeats):
        for name, check in ways.items():
            sources = [SOURCE.format(tag=uuid.uuid4().hex) for _ in range(options.sources)]
            wall, used = time.perf_counter(), cpu()
            for source in sources:
                assert check(source).verdict == "ok"
            found[name].append(((time.perf_counter() - wall), cpu() - used))
    for name, rows in found.items():
        wall = statistics.median(row[0] for row in rows) * 1000 / options.sources
        used = statistics.median(row[1] for row in rows) * 1000 / options.sources
        print(f"{name}: {wall:.2f} ms a check, the trainer's CPU {used:.2f} ms")


if __name__ == "__main__":
    main()
