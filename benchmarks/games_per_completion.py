"""What playing more games per completion costs: the reward functions on a run's own completions.

Takes the completions a training run logged (`completions.jsonl`), groups them by step, and calls the
three reward functions on each step's completions as TRL does, with an empty verdict cache, once for
each value of `games_per_completion`; prints the median seconds per step next to the run's median
step time (from `metrics.jsonl`). A small model's completions stop early (a constant key stalls after
32 moves), so `--probe N` times N completions that play long games instead (`gpu_step.py`'s probe:
a greedy player, a cycling one, a random one, a forbidden import, prose and an endless loop).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/games_per_completion.py outputs/cpu --games 1,2,4
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/games_per_completion.py outputs/cpu --probe 16 --games 1,2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", help="a run's output folder (completions.jsonl, metrics.jsonl, run_config.json)"
    )
    parser.add_argument("--games", default="1,2,4", help="values of games_per_completion to time")
    parser.add_argument("--probe", type=int, default=0, help="time N long-playing completions, 3 rounds")
    args = parser.parse_args(argv)

    from helpers import rewards
    from helpers.metrics import completions_path, read_metrics
    from helpers.runs import saved_config
    from helpers.training import start_reward_pool

    config = saved_config(args.run)
    by_step = defaultdict(list)
    if args.probe:
        from gpu_step import PROBE_STRATEGIES

        for step in range(1, 4):
            for i in range(args.probe):
                text = PROBE_STRATEGIES[i % len(PROBE_STRATEGIES)]
                by_step[step].append(text.replace("(board):\n", f"(board):\n    # sample {step}.{i}\n"))
    else:
        for record in read_metrics(completions_path(args.run)):
            by_step[record["step"]].append(record["completion"])
    step_times = [r["step_time"] for r in read_metrics(args.run) if isinstance(r.get("step_time"), float)]
    start_reward_pool(config)
    print(f"{len(by_step)} steps of {args.run}; the run's median step: {statistics.median(step_times):.2f} s")
    for games in (int(value) for value in args.games.split(",")):
        active = replace(config, rewards=replace(config.rewards, games_per_completion=games))
        functions = rewards.reward_functions(active)
        seconds = []
        for step, completions in sorted(by_step.items()):
            rewards._cache.clear()
            started = time.perf_counter()
            for function in functions:
                function(completions=completions, trainer_state=SimpleNamespace(global_step=step - 1))
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        share = median / statistics.median(step_times)
        print(
            f"games_per_completion={games}: median {median:.3f} s a step (max {max(seconds):.3f}), {share:.1%} of a step"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
