"""Random play on `helpers.game.GameBoard` against a plain list-of-lists engine, side by side.

Both engines play the same seeded games with the same random keys (the spawn protocol documented in
`helpers/game.py`), so they must finish with the same scores; the script checks that, then prints
moves per second and the speed-up. The runs alternate, and each engine's best run is kept.

    .venv/bin/python benchmarks/game_speed.py --games 100 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import time

from helpers import game as engine


class ReferenceGame:
    """A straightforward 2048 engine: a list of lists, loops over cells, no caches."""

    def __init__(self, size: int, seed: int, target: int = 2048, probability_fours: float = 0.10) -> None:
        self.size = size
        self.target = target
        self.probability_fours = probability_fours
        self.rng = random.Random(engine.spawn_seed(seed))
        self.grid = [[0] * size for _ in range(size)]
        self.score = 0
        self.state = "ongoing"
        self.spawn()
        self.spawn()

    def spawn(self) -> None:
        empties = [(r, c) for r in range(self.size) for c in range(self.size) if self.grid[r][c] == 0]
        if empties:
            r, c = empties[int(self.rng.random() * len(empties))]
            self.grid[r][c] = 4 if self.rng.random() < self.probability_fours else 2

    @staticmethod
    def merge_line(line: list[int]) -> tuple[list[int], int]:
        tiles = [v for v in line if v]
        out, gained, i = [], 0, 0
        while i < len(tiles):
            if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
                out.append(tiles[i] * 2)
                gained += tiles[i] * 2
                i += 2
            else:
                out.append(tiles[i])
                i += 1
        return out + [0] * (len(line) - len(out)), gained

    def move(self, direction: str) -> bool:
        n = self.size
        new = [[0] * n for _ in range(n)]
        gained = 0
        for k in range(n):
            line = self.grid[k][:] if direction in ("left", "right") else [self.grid[r][k] for r in range(n)]
            if direction in ("right", "down"):
                line.reverse()
            merged, points = self.merge_line(line)
            gained += points
            if direction in ("right", "down"):
                merged.reverse()
            for i in range(n):
                if direction in ("left", "right"):
                    new[k][i] = merged[i]
                else:
                    new[i][k] = merged[i]
        if new == self.grid:
            return False
        self.grid = new
        self.score += gained
        self.spawn()
        if any(v >= self.target for row in self.grid for v in row):
            self.state = "success"
        elif not self.can_move():
            self.state = "failed"
        return True

    def can_move(self) -> bool:
        n = self.size
        for r in range(n):
            for c in range(n):
                v = self.grid[r][c]
                if (
                    v == 0
                    or (c + 1 < n and self.grid[r][c + 1] == v)
                    or (r + 1 < n and self.grid[r + 1][c] == v)
                ):
                    return True
        return False


def play_reference(games: int, size: int) -> tuple[list[int], int]:
    directions = ["up", "down", "left", "right"]
    scores, moves = [], 0
    for seed in range(games):
        game = ReferenceGame(size, seed)
        chooser = random.Random(10_000 + seed)
        while game.state == "ongoing":
            game.move(chooser.choice(directions))
            moves += 1
        scores.append(game.score)
    return scores, moves


def play_engine(games: int, size: int) -> tuple[list[int], int]:
    keys = ["é", "u", "a", "i"]  # up, down, left, right in the bepo map, the order `play_reference` uses
    scores, moves = [], 0
    for seed in range(games):
        game = engine.GameBoard(size=size, seed=seed)
        chooser = random.Random(10_000 + seed)
        while game.state() == "ongoing":
            game.do_action(chooser.choice(keys))
            moves += 1
        scores.append(game.score())
    return scores, moves


def timed(play, games: int, size: int) -> tuple[float, list[int], int]:
    start = time.perf_counter()
    scores, moves = play(games, size)
    return time.perf_counter() - start, scores, moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=100, help="seeded games per engine and run")
    parser.add_argument("--size", type=int, default=6, help="board side")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine (best is kept)")
    args = parser.parse_args()

    best = {"reference": float("inf"), "GameBoard": float("inf")}
    for _ in range(args.repeats):
        ref_time, ref_scores, moves = timed(play_reference, args.games, args.size)
        fast_time, fast_scores, fast_moves = timed(play_engine, args.games, args.size)
        if (ref_scores, moves) != (fast_scores, fast_moves):
            raise SystemExit("the engines disagree: same seeds and keys gave different games")
        best["reference"] = min(best["reference"], ref_time)
        best["GameBoard"] = min(best["GameBoard"], fast_time)

    print(
        f"random play, {args.games} games of {args.size}x{args.size} to 2048, {moves} moves, best of {args.repeats}"
    )
    print("| engine | seconds | moves/s | speed-up |\n|---|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {moves / seconds:,.0f} | {best['reference'] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
