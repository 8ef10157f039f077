"""How long the rewards of one training step take, and what the pool size and the stop at a timeout save.

One step's worth of completions (`--completions`, 256 as the `h100` profile generates) in the mix of
`benchmarks/gpu_step.py`'s reward probe: a greedy strategy, a cycling one and random moves that play full
games, a forbidden import, prose, and an infinite loop; `--loops-every N` puts the loop once in N
(6, the probe's pessimistic mix; a larger N is a model that rarely hangs). Every completion differs
(a comment naming its index), so nothing is played only once for several.

Each variant scores the same completions through `helpers.rewards.verdicts` with an empty cache, as a
step does, the `h100` profile's rewards (2 games a completion), in this order, each `--repeats` times:

- `before`: the pool as it was, at most 8 workers, and every game played (no stop at a timeout);
- `workers`: one worker per core (`helpers.sandbox.auto_workers`), every game played;
- `stop`: at most 8 workers, a strategy stops at its first game out of time;
- `now`: what training does now, both.

Every variant runs today's code otherwise (games replayed as they end, replay helpers): to time an older
commit, run its copy of this script (RESULTS.md does, with `git archive`).

`--step-s` gives the step the share is taken of (35.63 s: the `h100` profile's 256 completions on one
H200, RESULTS.md). `--without pidns seccomp all` also times `now` with those operating-system walls left
out, to see what each costs a job (never a setting to train with). The trainer's CPU seconds (dispatch, and the
replay of the games it does not hand to replay helpers) are reported beside. Usage, as measured in RESULTS.md:

    python3 benchmarks/reward_share.py --completions 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_step import PROBE_STRATEGIES, probe_texts  # noqa: E402

from helpers import rewards, sandbox  # noqa: E402
from helpers.config import make_config, training_seeds  # noqa: E402
from helpers.sandbox_rules import OS_WALLS  # noqa: E402

LOOP = PROBE_STRATEGIES[-1]
assert "while True" in LOOP


def mix(loops_every: int) -> list[str]:
    """The probe's strategies with the infinite loop once in `loops_every` (the others in turn)."""
    others = PROBE_STRATEGIES[:-1]
    return [
        LOOP if i % loops_every == loops_every - 1 else others[i % len(others)] for i in range(loops_every)
    ]


def timed(texts: list[str], workers: int, stop: bool, without: tuple[str, ...] = ()) -> tuple[float, float]:
    """Seconds for the verdicts of `texts` with a pool of `workers`, stopping at a timeout or not, and the
    seconds of CPU this process (the trainer's side: dispatch, and the replays no helper did) spent on them.

    `without` names operating-system walls (`helpers.sandbox_rules.OS_WALLS`) left out, to see their cost.
    """
    config = make_config("h100")
    walls = tuple(wall for wall in config.sandbox.os_walls if wall not in without)
    config = replace(config, sandbox=replace(config.sandbox, max_workers=workers, os_walls=walls))
    seeds = training_seeds(config.rewards, 0)
    sandbox.get_pool(config.sandbox)  # a warm pool, as in training
    real = rewards.play_batch

    def play(sources, game, seeds, limits, stop_at_timeout):
        return real(sources, game, seeds, limits, stop_at_timeout=stop)

    rewards.play_batch = play
    try:
        start, cpu = time.perf_counter(), time.process_time()
        found = rewards.verdicts(texts, config, seeds, rewards.VerdictCache())
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        rewards.play_batch = real
    assert len(found) == len(texts)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=256)
    parser.add_argument("--loops-every", type=int, nargs="+", default=[6, 24])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=35.63)
    parser.add_argument(
        "--without",
        nargs="*",
        default=[],
        metavar="WALLS",
        help="also time `now` without these operating-system walls (comma-separated names, or `all`)",
    )
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[], help="also time `now` with these pool sizes"
    )
    args = parser.parse_args()
    auto = sandbox.auto_workers()
    variants: dict[str, tuple[int, bool, tuple[str, ...]]] = {
        "before": (min(auto, 8), False, ()),
        "workers": (auto, False, ()),
        "stop": (min(auto, 8), True, ()),
        "now": (auto, True, ()),
    }
    for workers in args.workers:
        variants[f"now with {workers} workers"] = (workers, True, ())
    for names in args.without:
        variants[f"now without {names}"] = (
            auto,
            True,
            OS_WALLS if names == "all" else tuple(names.split(",")),
        )
    print(
        f"{auto} workers by default on this machine; {args.completions} completions, {args.repeats} repeats",
        flush=True,
    )
    table = []
    for every in args.loops_every:
        texts = probe_texts(args.completions, mix(every))
        medians = {}
        for name, (workers, stop, without) in variants.items():
            runs = [timed(texts, workers, stop, without) for _ in range(args.repeats)]
            medians[name] = statistics.median(seconds for seconds, _ in runs)
            row = {
                "loop once in": every,
                "variant": name,
                "workers": workers,
                "stop at timeout": stop,
                "runs_s": [round(seconds, 3) for seconds, _ in runs],
                "median_s": round(medians[name], 3),
                "trainer_cpu_s": round(statistics.median(cpu for _, cpu in runs), 3),
                "share_of_step": round(medians[name] / (args.step_s + medians[name]), 4),
                "speed-up": round(medians["before"] / medians[name], 2),
            }
            table.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    print(
        "| loop once in | variant | workers | stop at a timeout | median s | runs | trainer CPU s"
        " | share of a step | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table:
        stop = "yes" if row["stop at timeout"] else "no"
        runs = ", ".join(f"{run:.2f}" for run in row["runs_s"])
        print(
            f"| {row['loop once in']} | {row['variant']} | {row['workers']} | {stop} | {row['median_s']:.2f}"
            f" | {runs} | {row['trainer_cpu_s']:.2f} | {100 * row['share_of_step']:.1f}% | {row['speed-up']:.2f}x |"
        )


if __name__ == "__main__":
    main()
