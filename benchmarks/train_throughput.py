"""Time the user's own training command, `python -m helpers train`, and report its throughput.

Each `--run LABEL=ARGS` runs `python -m helpers train ARGS --output-dir <out>/runs/LABEL --no-progress`
in a fresh run folder, one after the other, and reads what the run itself wrote: `metrics.jsonl` (TRL's
`step_time` and `completions/clipped_ratio` for every step) and `run_config.json` (the completions an
optimiser step consumes). It reports, per run: the wall time of the command, the seconds until the
first step ended (loading and compilation included), the first step's own time, the steady-state
seconds per step (every step after the first) and completions per second, where

    completions per step = per_device_train_batch_size x gradient_accumulation_steps x processes

A run that repeats an earlier one on the same machine shows what the compile cache
(`--compile-cache`, default outputs/compile-cache) saves on the first step. The console output of
each run goes to `<out>/LABEL.log`; the table to `<out>/throughput.md` and `<out>/throughput.json`.
With `--sample-stacks` each run goes through `benchmarks/stack_sampler.py` (its samples in
`<out>/LABEL-stacks.jsonl`), and the summary adds where the time went before the first step, in the first
step and in the last one (`phases`), with torch's compile counters at the end of the first step and of the run.

    python benchmarks/train_throughput.py --out $OUT \\
        --run "cold=--set model_name=/dev/shm/gpt-oss-20b-random --max-steps 3" \\
        --run "warm=--set model_name=/dev/shm/gpt-oss-20b-random --max-steps 3" \\
        --run "gpus2=--set model_name=/dev/shm/gpt-oss-20b-random --max-steps 3 --processes 2"
    python benchmarks/train_throughput.py --out /tmp/tp --run "cpu=--profile cpu-tiny --max-steps 2"  # CPU check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.cli import launch_command  # noqa: E402  (after the path above)
from helpers.metrics import metrics_path, read_metrics  # noqa: E402
from helpers.runs import saved_config  # noqa: E402


def processes_of(args: list[str]) -> int:
    """The `--processes N` of a training command's arguments (1 when absent)."""
    for index, arg in enumerate(args):
        if arg == "--processes" and index + 1 < len(args):
            return int(args[index + 1])
        if arg.startswith("--processes="):
            return int(arg.split("=", 1)[1])
    return 1


def summarise(
    label: str, args: list[str], run_dir: Path, wall_s: float, started: float, rc: int
) -> dict[str, Any]:
    """One run's figures from its own `metrics.jsonl` and `run_config.json`."""
    steps = [row for row in read_metrics(metrics_path(run_dir)) if "step_time" in row]
    summary: dict[str, Any] = {"label": label, "args": shlex.join(args), "rc": rc, "wall_s": round(wall_s, 1)}
    if not steps:
        return summary | {"error": "no step was logged (see the log)"}
    training = saved_config(run_dir).training
    processes = processes_of(args)
    per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps * processes
    steady = [row["step_time"] for row in steps[1:]]
    summary |= {
        "processes": processes,
        "completions_per_step": per_step,
        "max_completion_length": training.max_completion_length,
        "first_step_end_s": round(steps[0]["time"] - started, 1),
        "first_step_s": round(steps[0]["step_time"], 1),
        "steps": len(steps),
        "step_times": [round(row["step_time"], 2) for row in steps],
        "losses": [row.get("loss") for row in steps],
        "grad_norms": [row.get("grad_norm") for row in steps],
        "clipped_ratio": round(
            statistics.fmean(row.get("completions/clipped_ratio", 0.0) for row in steps), 3
        ),
        "mean_length": round(statistics.fmean(row.get("completions/mean_length", 0.0) for row in steps), 1),
    }
    if steady:
        seconds = statistics.fmean(steady)
        summary |= {"steady_s": round(seconds, 2), "completions_per_s": round(per_step / seconds, 2)}
    return summary


def phases(stacks: Path, run_dir: Path, started: float) -> dict[str, Any]:
    """Where the time went (stack samples) before the first step, in the first step and in the last one."""
    from stack_sampler import compile_totals
    from stack_sampler import summarise as summarise_stacks

    steps = [row for row in read_metrics(metrics_path(run_dir)) if "step_time" in row]
    if not stacks.is_file() or not steps:
        return {}
    first, last = steps[0], steps[-1]
    found = {
        "before_first_step": summarise_stacks(stacks, started, first["time"] - first["step_time"]),
        "first_step": summarise_stacks(stacks, first["time"] - first["step_time"], first["time"]),
        "compile_after_first_step": compile_totals(stacks, first["time"]),
        "compile_at_end": compile_totals(stacks, float("inf")),
    }
    if len(steps) > 1:
        found["last_step"] = summarise_stacks(stacks, last["time"] - last["step_time"], last["time"])
    return {"phases": found}


def run(
    label: str, args: list[str], out: Path, timeout_s: float, sample_stacks: bool = False
) -> dict[str, Any]:
    """Run one training command in a fresh run folder and summarise it (never raises on a failed run)."""
    run_dir = out / "runs" / label
    processes = processes_of(args)
    stacks = out / (f"{label}-stacks.jsonl" if processes == 1 else f"{label}-stacks-{{rank}}.jsonl")
    command = [sys.executable, "-m", "helpers", "train", *args, "--output-dir", str(run_dir), "--no-progress"]
    if sample_stacks:
        if processes > 1:  # the launcher's own processes run the sampler, each into its rank's file
            command = launch_command(command[3:], processes)
        sampler = [str(ROOT / "benchmarks" / "stack_sampler.py"), "--samples", str(stacks), "--"]
        at = command.index("helpers") - 1  # the "-m" before helpers
        command[at:at] = sampler
    print(f"[{label}] {shlex.join(command)}", flush=True)
    started = time.time()
    begin = time.monotonic()
    with (out / f"{label}.log").open("w") as log:
        # A session of its own, so that a timeout stops accelerate's processes too, not the launcher alone.
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = 124
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            with contextlib.suppress(
                ProcessLookupError
            ):  # a rank stuck in NCCL or CUDA outlives the launcher
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    summary = summarise(label, args, run_dir, time.monotonic() - begin, started, rc)
    if sample_stacks and processes == 1:
        summary |= phases(stacks, run_dir, started)
    elif sample_stacks:
        summary["phases_by_rank"] = [
            phases(Path(str(stacks).replace("{rank}", str(rank))), run_dir, started).get("phases")
            for rank in range(processes)
        ]
    print(f"[{label}] {json.dumps(summary)}", flush=True)
    return summary


def markdown(summaries: list[dict[str, Any]]) -> str:
    """The runs as a Markdown table."""
    lines = [
        "| run | processes | completions/step | first step ended at | first step | steady s/step | completions/s | clipped | wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['label']} | {s.get('processes', '')} | {s.get('completions_per_step', '')} | "
            f"{s.get('first_step_end_s', '')} s | {s.get('first_step_s', '')} s | {s.get('steady_s', '')} | "
            f"{s.get('completions_per_s', '')} | {s.get('clipped_ratio', '')} | {s['wall_s']} s (rc {s['rc']}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", action="append", required=True, metavar="LABEL=ARGS", help="a run: label=train arguments"
    )
    parser.add_argument("--out", default="benchmark-out", help="folder for the logs, runs and table")
    parser.add_argument("--timeout-s", type=float, default=570, help="stop a run after this many seconds")
    parser.add_argument(
        "--deadline-s", type=float, default=None, help="skip runs that would start after this"
    )
    parser.add_argument(
        "--sample-stacks", action="store_true", help="sample each run's stack (benchmarks/stack_sampler.py)"
    )
    options = parser.parse_args()
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    summaries = []
    for spec in options.run:
        label, _, rest = spec.partition("=")
        remaining = None if options.deadline_s is None else options.deadline_s - (time.monotonic() - begin)
        if remaining is not None and remaining < 30:
            print(f"[{label}] skipped: the deadline is near", flush=True)
            continue
        timeout = options.timeout_s if remaining is None else min(options.timeout_s, remaining)
        summaries.append(run(label, shlex.split(rest), out, timeout, options.sample_stacks))
        (out / "throughput.json").write_text(json.dumps(summaries, indent=2))
        (out / "throughput.md").write_text(markdown(summaries) + "\n")
    print(markdown(summaries), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
