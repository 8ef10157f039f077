"""Where a command's wall time goes: sample the main thread's Python stack while `python -m MODULE` runs.

    python benchmarks/stack_sampler.py --samples S.jsonl -- -m helpers train ARGS   # record
    python benchmarks/stack_sampler.py --summarise S.jsonl --from T0 --to T1         # read back
    accelerate launch ... benchmarks/stack_sampler.py --samples S-{rank}.jsonl -- -m helpers train ARGS

Recording runs the module in this process (as `python -m` would) with a thread beside it that, every
`--interval` seconds, writes one line to S.jsonl: the wall-clock time and the main thread's stack, outermost
frame first, as `file:function` (the file shortened to its package path). Every few seconds the line also
holds torch's own compile counters (`torch._dynamo.utils.compilation_time_metrics`, summed, and `counters`)
once torch is imported; this file never imports torch itself, so the module's import order (Unsloth
before transformers) is kept. Lines are flushed as they are written, so a run stopped by a timeout keeps
what it sampled.

Summarising sorts the samples between two wall-clock times into phases (`PHASES`, the first that matches
any frame of the stack wins) and weighs each sample by the time since the previous one, since a thread
holding the interpreter delays the sampler. `benchmarks/train_throughput.py --sample-stacks` records every
run this way and reports the phases of the first step against a later one.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

COMPILING = (
    "torch/_dynamo/convert_frame",
    "torch/_inductor/compile_fx",
    "torch/_inductor/codecache",
    "torch/_inductor/async_compile",
    "triton/compiler/",
    ":benchmark_all_configs",
)
"""Frames seen only while something is being compiled (or loaded from a compile cache), never while
compiled code runs: a call into compiled code passes through `torch/_dynamo/eval_frame.py`, so a frame of
`torch/_dynamo/` alone says nothing."""

PHASES = [
    ("imports", ("<frozen importlib",)),
    ("waiting for the other processes", ("torch/distributed/distributed_c10d",)),
    ("rewards", ("helpers/rewards", "helpers/sandbox")),
    ("scoring: log-probabilities", ("get_per_token_logps", "compute_logps")),
    ("generation", (":generate", "generation/utils", "fast_generate")),
    ("backward", (":backward", "autograd/__init__", "autograd/graph.py")),
    ("optimizer", ("torch/optim/", "bitsandbytes/optim")),
]
"""A phase of the work and the markers (substrings of `file:function`) that put a sample in it, in order of
precedence; a sample that is compiling (`COMPILING`) is put in a compile phase first."""

COMPILE_KEYS_EVERY = 5.0


def _short(filename: str) -> str:
    """`.../site-packages/torch/_dynamo/x.py` -> `torch/_dynamo/x.py` (the path from its package on)."""
    for marker in ("site-packages/", "dist-packages/", ".gpu-site/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[1]
    return filename.rsplit("/", 2)[-2] + "/" + filename.rsplit("/", 1)[-1] if "/" in filename else filename


def _compile_state() -> dict[str, Any] | None:
    """torch's compile-time counters, if torch's dynamo is already imported (never imports it)."""
    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return None
    metrics = getattr(utils, "compilation_time_metrics", {})
    counters = getattr(utils, "counters", {})
    return {
        "times": {name: [round(sum(values), 3), len(values)] for name, values in list(metrics.items())},
        "counters": {group: dict(counter) for group, counter in list(counters.items()) if counter},
    }


def _sample(path: Path, interval: float, main_ident: int, done: threading.Event) -> None:
    """Write a sample every `interval` seconds until `done`, then one last line with the compile counters."""
    last_counters = 0.0
    with path.open("w") as out:
        while not done.wait(interval):
            frame = sys._current_frames().get(main_ident)
            stack = []
            while frame is not None:
                stack.append(f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}")
                frame = frame.f_back
            row: dict[str, Any] = {"t": round(time.time(), 3), "stack": stack[::-1]}
            if time.monotonic() - last_counters >= COMPILE_KEYS_EVERY:
                state = _compile_state()
                if state is not None:
                    row["compile"] = state
                    last_counters = time.monotonic()
            out.write(json.dumps(row) + "\n")
            out.flush()
        state = _compile_state()
        out.write(json.dumps({"t": round(time.time(), 3), "stack": [], "compile": state}) + "\n")


def record(samples: Path, interval: float, argv: list[str]) -> None:
    """Run `python -m MODULE ARGS` (argv = ["-m", MODULE, *ARGS]) here, sampling its main thread.

    Under `accelerate launch` each process records its own file: `{rank}` in the path becomes its RANK."""
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("give the command as: -- -m MODULE ARGS")
    samples = Path(str(samples).replace("{rank}", os.environ.get("RANK", "0")))
    done = threading.Event()
    sampler = threading.Thread(
        target=_sample, args=(samples, interval, threading.get_ident(), done), daemon=True
    )
    sampler.start()
    sys.argv = [argv[1], *argv[2:]]
    sys.path[0] = os.getcwd()  # as `python -m` has it, not this script's folder
    try:
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    finally:
        done.set()
        sampler.join(timeout=5)


def phase_of(stack: list[str]) -> str:
    """The phase a sample belongs to: compiling (tracing, or the backend and its caches) first, then the
    first phase of `PHASES` any frame matches, else "other"."""
    if any(marker in frame for frame in stack for marker in COMPILING):
        backend = any(
            "torch/_inductor/" in frame or "torch/_functorch/" in frame or "triton/" in frame
            for frame in stack
        )
        return (
            "compile: inductor, aot autograd, triton (or their caches)"
            if backend
            else "compile: dynamo tracing"
        )
    for phase, markers in PHASES:
        if any(marker in frame for frame in stack for marker in markers):
            return phase
    return "other"


def summarise(samples: Path, start: float, end: float, top: int = 12) -> dict[str, Any]:
    """Seconds per phase between wall-clock times `start` and `end`, and the innermost frames seen most."""
    phases: collections.Counter[str] = collections.Counter()
    innermost: collections.Counter[str] = collections.Counter()
    previous = None
    for line in samples.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run
            continue
        weight = 0.0 if previous is None else row["t"] - previous
        previous = row["t"]
        if not start <= row["t"] <= end:
            continue
        phases[phase_of(row["stack"])] += weight
        if row["stack"]:
            innermost[row["stack"][-1]] += weight
    return {
        "seconds": round(end - start, 1) if end < float("inf") else None,
        "sampled_s": round(sum(phases.values()), 1),
        "phases": {name: round(value, 1) for name, value in phases.most_common()},
        "innermost": {name: round(value, 1) for name, value in innermost.most_common(top)},
    }


def compile_totals(samples: Path, at: float) -> dict[str, Any] | None:
    """The last compile counters sampled at or before wall-clock time `at`."""
    found = None
    for line in samples.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row["t"] > at:
            break
        found = row.get("compile", found)
    return found


def main() -> None:
    argv = sys.argv[1:]
    command = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, help="record into this JSONL file")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("--summarise", type=Path, help="read this JSONL file back")
    parser.add_argument("--from", dest="start", type=float, default=0.0, help="wall-clock start")
    parser.add_argument("--to", dest="end", type=float, default=float("inf"), help="wall-clock end")
    options = parser.parse_args(argv)
    if options.summarise:
        print(json.dumps(summarise(options.summarise, options.start, options.end), indent=2))
    elif options.samples and command:
        record(options.samples, options.interval, command)
    else:
        parser.error("give --samples FILE -- -m MODULE ARGS, or --summarise FILE")


if __name__ == "__main__":
    main()
