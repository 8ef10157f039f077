"""Which threads of a training's processes use the CPU: a per-thread CPU log read from /proc (Linux).

    python benchmarks/thread_cpu.py --out cpu.jsonl --match "helpers train" --every 5 &

Every `--every` seconds, for each process whose command line contains `--match` (the sampler itself
excepted), one line: the wall-clock time, the process id, its command line (shortened), the CPUs it may
run on, and for each of its threads that used any CPU since the previous line, the thread's name and its
share of one CPU over that interval. Runs until killed. `--summarise cpu.jsonl` prints, per process, the
threads that used the most CPU on average.

A generation loop bound by kernel launches runs at the speed of one thread; this shows whether another
thread of the same process (NCCL's proxy, a watchdog, an OpenMP pool) or another process competes with it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def thread_times(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread id: (name, CPU seconds used so far)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        stat = _read(task / "stat")
        if stat is None:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        times[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return times


def matching(match: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        raw = _read(entry / "cmdline")
        if not raw:
            continue
        command = raw.replace("\0", " ").strip()
        if match in command and "thread_cpu.py" not in command:
            found[int(entry.name)] = command[:160]
    return found


def record(out: Path, match: str, every: float) -> None:
    before: dict[int, dict[int, tuple[str, float]]] = {}
    stamp = time.monotonic()
    with out.open("a") as sink:
        while True:
            time.sleep(every)
            now, wall = time.monotonic(), time.time()
            interval = now - stamp
            stamp = now
            for pid, command in matching(match).items():
                times = thread_times(pid)
                earlier = before.get(pid, {})
                busy = {}
                for tid, (name, seconds) in times.items():
                    used = seconds - earlier.get(tid, (name, seconds))[1]
                    if used > 0:
                        busy[f"{name}:{tid}"] = round(used / interval, 3)
                before[pid] = times
                try:
                    cpus = len(os.sched_getaffinity(pid))
                except OSError:
                    cpus = None
                line = {
                    "t": round(wall, 2),
                    "pid": pid,
                    "command": command,
                    "cpus": cpus,
                    "threads": len(times),
                }
                line["busy"] = dict(sorted(busy.items(), key=lambda item: -item[1])[:12])
                sink.write(json.dumps(line) + "\n")
                sink.flush()


def summarise(path: Path, start: float | None, end: float | None) -> None:
    per_pid: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    lines: collections.Counter = collections.Counter()
    commands = {}
    for raw in path.read_text().splitlines():
        row = json.loads(raw)
        if (start is not None and row["t"] < start) or (end is not None and row["t"] > end):
            continue
        lines[row["pid"]] += 1
        commands[row["pid"]] = (row["command"], row["cpus"], row["threads"])
        for thread, share in row["busy"].items():
            per_pid[row["pid"]][thread.rsplit(":", 1)[0]] += share
    for pid, counter in per_pid.items():
        command, cpus, threads = commands[pid]
        print(f"{pid} ({cpus} CPUs allowed, {threads} threads): {command}")
        for name, total in counter.most_common(8):
            print(f"    {total / lines[pid]:6.2f} CPUs  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="record to this JSON-lines file")
    parser.add_argument("--match", default="helpers", help="processes whose command line contains this")
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--summarise", type=Path, help="print a recorded file's busiest threads")
    parser.add_argument("--from", dest="start", type=float, help="summarise from this wall-clock time")
    parser.add_argument("--to", dest="end", type=float, help="summarise up to this wall-clock time")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise, args.start, args.end)
    elif args.out:
        record(args.out, args.match, args.every)
    else:
        parser.error("give --out to record or --summarise to read")


if __name__ == "__main__":
    main()
