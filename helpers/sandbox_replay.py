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
import dataclasses
import json
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from helpers.game import GameBoard
from helpers.sandbox_rules import start_interpreter

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


REPLAY_TIMEOUT = 30.0
"""Seconds a helper may take to answer (a replay takes milliseconds); past it, it is killed and the caller
replays the game itself."""


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


def _wait(fd: int, writing: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    ready = (
        select.select([], [fd], [], max(remaining, 0))
        if writing
        else select.select([fd], [], [], max(remaining, 0))
    )
    if not any(ready):
        raise TimeoutError("a replay helper did not answer in time")


def _slim(claim: object) -> dict | None:
    """What `_judge` reads of a job's claim (its score and largest tile; a non-number as None), so that no more
    of what a job said travels: the verdict is the same."""
    if not isinstance(claim, dict):
        return None
    return {
        key: value if isinstance(value, int | float) else None
        for key in ("score", "max_tile")
        for value in [claim.get(key)]
    }


class _Helper:
    """One helper process and the trainer's ends of its pipes (read and written with a deadline)."""

    def __init__(self) -> None:
        self.process = start_interpreter(
            _BOOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        for stream in (self.process.stdin, self.process.stdout):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)  # a stuck helper must not block a write or a read

    def judge(self, request: bytes) -> object:
        assert self.process.stdin is not None and self.process.stdout is not None
        deadline = time.monotonic() + REPLAY_TIMEOUT
        data = memoryview(_LENGTH.pack(len(request)) + request)
        out, into = self.process.stdin.fileno(), self.process.stdout.fileno()
        while data:
            _wait(out, True, deadline)
            with contextlib.suppress(BlockingIOError):
                data = data[os.write(out, data) :]
        answer = bytearray()
        needed = _LENGTH.size
        while len(answer) < needed:
            _wait(into, False, deadline)
            try:
                chunk = os.read(into, max(needed - len(answer), 1 << 16))
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError("a replay helper ended")
            answer += chunk
            if needed == _LENGTH.size and len(answer) >= _LENGTH.size:
                needed += _LENGTH.unpack_from(answer)[0]
        return json.loads(bytes(answer[_LENGTH.size : needed]))

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
        self.replayed = 0
        """Games these helpers replayed (the caller replayed the others itself)."""
        self.lock = threading.Lock()
        self.helpers: list[_Helper] = []
        """Every helper started and not yet thrown away, idle or busy."""
        self.starting = 0
        """Helpers being started now (counted against `count`)."""
        self.broken = False
        """This machine could not start one: no more are tried."""
        self.closed = False

    def judge(self, game: Any, outcome: Any, stall_moves: int) -> dict[str, Any] | None:
        """The fields of `_judge(game, outcome, stall_moves)`'s `GameResult`, from a helper; None when the
        caller must replay the game itself (no helpers, a game of another class than `GameBoard`, a helper
        that failed, answered nonsense or took longer than `REPLAY_TIMEOUT`)."""
        if (
            self.count <= 0
            or self.broken
            or self.closed
            or os.getpid() != self.owner
            or type(game) is not GameBoard
        ):
            return None
        try:
            slim = dataclasses.replace(outcome, claim=_slim(outcome.claim))
            request = pickle.dumps((game, slim, stall_moves), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - any failure here only means the caller replays the game itself
            return None
        helper = self._take()
        if helper is None:
            return None
        try:
            answer = helper.judge(request)
            if not isinstance(answer, dict) or set(answer) != set(_FIELDS):
                raise ValueError("a replay helper answered something else than a game's result")
        except Exception:  # noqa: BLE001 - a helper that failed in any way is thrown away
            self._discard(helper)
            return None
        with self.lock:
            self.replayed += 1
            keep = helper in self.helpers  # not closed meanwhile
        if keep:
            self.idle.put(helper)
        return answer

    def _take(self) -> _Helper | None:
        with contextlib.suppress(queue.Empty):
            return self.idle.get_nowait()
        with self.lock:
            start = len(self.helpers) + self.starting < self.count and not self.closed
            if start:
                self.starting += 1
        if not start:  # every helper busy: wait a little for one, else the caller replays itself
            with contextlib.suppress(queue.Empty):
                return self.idle.get(timeout=1.0)
            return None
        try:
            helper: _Helper | None = _Helper()
        except OSError:
            helper = None
        with self.lock:
            self.starting -= 1
            if helper is None:
                self.broken = True  # this machine cannot start them: stop trying
            elif not self.closed:
                self.helpers.append(helper)
                return helper
        if helper is not None:  # closed while it started
            helper.close()
        return None

    def _discard(self, helper: _Helper) -> None:
        helper.close()
        with self.lock:
            if helper in self.helpers:
                self.helpers.remove(helper)

    def close(self) -> None:
        """Kill every helper; a replay under way falls back to its caller."""
        with self.lock:
            self.closed = True
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
