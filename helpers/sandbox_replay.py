"""Trusted helper processes that replay finished games for the trainer.

The trainer believes only the moves it replays itself (`helpers.sandbox._judge`): a game to 2048 on the
6x6 board takes about 1,000 moves, so a step of 256 completions playing two games each is about half a
million moves, a few seconds of one core, and with the sandbox's workers on every other core the
trainer's own core became the floor of a step's rewards. A `Replayers` set spreads that work over a few
helper processes. They are the trainer's, not the sandbox's: fresh interpreters of this project's code
(`python -I -S`, an empty environment, started like the sandbox's template, so never through
`multiprocessing`) that receive a game and what a finished job left, run the same `_judge`, and answer
the `GameResult`'s fields as JSON. No strategy code ever runs in them; the keys they replay are data.

Nothing depends on them: when a helper cannot start, dies or answers something unexpected, the caller
replays that game itself (`Replayers.judge` returns None), so results never change, only where the work
is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.game import GameBoard

REPLAYERS_PER_WORKERS = 4
"""A pool of `size` workers gets `size // REPLAYERS_PER_WORKERS` helpers (none below 4 workers: the
trainer's thread keeps up with so few)."""
_BOOT = (
    "import sys; sys.path.insert(0, {root!r}); from helpers.sandbox import _judge;"
    " from helpers.sandbox_replay import serve; serve(_judge)"
)
"""A helper's program: `helpers.sandbox`'s judge (named here, not imported: that module imports this one)."""
_LENGTH = struct.Struct("<I")
_FIELDS = ("state", "steps", "score", "max_tile", "error", "output", "keys")


def replayer_count(workers: int) -> int:
    """Helpers for a pool of `workers` job processes."""
    return workers // REPLAYERS_PER_WORKERS


def _read_exactly(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError("the stream ended")
    return data


def _send(stream: Any, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: Any) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
    return _read_exactly(stream, size)


class _Helper:
    """One helper process and the trainer's ends of its pipes."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        environment = {key: os.environ[key] for key in ("LD_LIBRARY_PATH",) if key in os.environ}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _BOOT.format(root=root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=environment,
            cwd="/",
        )

    def judge(self, request: bytes) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        _send(self.process.stdin, request)
        return json.loads(_receive(self.process.stdout))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


class Replayers:
    """Up to `count` helper processes, started on first use; `judge` may be called from several threads."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.owner = os.getpid()
        self.idle: queue.SimpleQueue[_Helper] = queue.SimpleQueue()
        self.started = 0
        self.replayed = 0
        """Games these helpers replayed (the caller replayed the others itself)."""
        self.lock = threading.Lock()
        self.helpers: list[_Helper] = []
        self.broken = False

    def judge(self, game: Any, outcome: Any, stall_moves: int) -> dict[str, Any] | None:
        """The fields of `_judge(game, outcome, stall_moves)`'s `GameResult`, from a helper; None when the
        caller must replay the game itself (no helpers, a game of another class than `GameBoard`, a helper
        that failed)."""
        if self.count <= 0 or self.broken or os.getpid() != self.owner or type(game) is not GameBoard:
            return None
        try:  # what a job said came through JSON, but may nest deeper than pickle goes
            request = pickle.dumps((game, outcome, stall_moves), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - any failure here only means the caller replays the game itself
            return None
        helper = self._take()
        if helper is None:
            return None
        try:
            answer = helper.judge(request)
            if not isinstance(answer, dict) or set(answer) != set(_FIELDS):
                raise ValueError(f"a replay helper answered {sorted(answer)}")
        except (OSError, EOFError, ValueError, struct.error):
            helper.close()
            with self.lock:
                self.helpers.remove(helper)
                self.started -= 1
            return None
        self.idle.put(helper)
        with self.lock:
            self.replayed += 1
        return answer

    def _take(self) -> _Helper | None:
        with contextlib.suppress(queue.Empty):
            return self.idle.get_nowait()
        with self.lock:
            start = self.started < self.count
            if start:
                self.started += 1
        if not start:  # every helper busy: wait a little for one, else the caller replays itself
            with contextlib.suppress(queue.Empty):
                return self.idle.get(timeout=1.0)
            return None
        try:
            helper = _Helper()
        except OSError:
            with self.lock:
                self.started -= 1
                self.broken = True  # this machine cannot start them: stop trying
            return None
        with self.lock:
            self.helpers.append(helper)
        return helper

    def close(self) -> None:
        with self.lock:
            helpers, self.helpers = self.helpers, []
        for helper in helpers:
            helper.close()


def serve(judge: Callable[[Any, Any, int], Any]) -> None:
    """A helper's loop: read a pickled (game, outcome, stall_moves) from stdin, answer `judge`'s result."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return
        game, outcome, stall_moves = pickle.loads(request)  # the trainer's own bytes
        result = judge(game, outcome, stall_moves)
        fields = {name: getattr(result, name) for name in _FIELDS}
        _send(answers, json.dumps(fields, ensure_ascii=True).encode("ascii"))
