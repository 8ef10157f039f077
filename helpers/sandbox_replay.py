"""Trusted helper processes that replay finished games for the trainer.

The trainer believes only the moves it replays itself (`helpers.sandbox._judge`): a game to 2048 on the
6x6 board takes about 1,000 moves, so a step of 256 completions playing two games each is about half a
million moves, 2.3-3.0 s of one core on a one-H200 host (benchmarks/RESULTS.md), and with the sandbox's
workers on every other core the trainer's own core became the floor of a step's rewards. A `Replayers` set spreads that work over a few
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


REPLAY_TIMEOUT = 30.0
"""Seconds a helper may take to answer (a replay takes milliseconds); past it, it is killed and the caller
replays the game itself."""


def replayer_count(workers: int) -> int:
    """Helpers for a pool of `workers` job processes."""
    return workers // REPLAYERS_PER_WORKERS


def start_interpreter(program: str, *args: str, **popen: Any) -> subprocess.Popen:
    """A fresh interpreter running `program` with this project's code first on its path: isolated (`-I -S`),
    an empty environment but `LD_LIBRARY_PATH`, in a session of its own, at `/`, nothing of the caller's
    `__main__` or CUDA state. The sandbox's template (`helpers.sandbox_pool`) and the replay helpers both
    start this way.

    `program` may use `{root}`, the project's folder; `popen` adds `subprocess.Popen` options (pipes, fds).
    """
    root = str(Path(__file__).resolve().parent.parent)
    environment = {key: os.environ[key] for key in ("LD_LIBRARY_PATH",) if key in os.environ}
    command = [sys.executable, "-I", "-S", "-c", program.format(root=root), *args]
    return subprocess.Popen(command, start_new_session=True, env=environment, cwd="/", **popen)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0)


def _ready(fd: int, event: int, deadline: float | None) -> bool:
    """Whether `fd` is ready for `event` (select.POLLIN or POLLOUT) before `deadline`. `poll`, not `select`,
    which refuses descriptors from 1024 on (a trainer with many files open)."""
    poller = select.poll()
    poller.register(fd, event)
    left = _left(deadline)
    return bool(poller.poll(None if left is None else left * 1000))


def _write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write all of `data` to a pipe before `deadline` (TimeoutError after it; None: no deadline)."""
    view = memoryview(data)
    while view:
        if not _ready(fd, select.POLLOUT, deadline):
            raise TimeoutError("a helper process did not read in time")
        with contextlib.suppress(BlockingIOError):
            view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int, deadline: float | None = None) -> bytes:
    """Read `size` bytes from a pipe before `deadline` (TimeoutError after it, EOFError at its end)."""
    data = bytearray()
    while len(data) < size:
        if not _ready(fd, select.POLLIN, deadline):
            raise TimeoutError("a helper process did not answer in time")
        try:
            chunk = os.read(fd, size - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the pipe ended")
        data += chunk
    return bytes(data)


def _send(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """One message: its length, then its bytes."""
    _write_all(fd, _LENGTH.pack(len(payload)) + payload, deadline)


def _receive(fd: int, deadline: float | None = None) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size, deadline))
    return _read_exactly(fd, size, deadline)


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
    """One trusted helper process and the trainer's ends of its pipes (read and written with a deadline):
    a replay helper, or with another `program` the static checks' checker (`helpers.sandbox_checks`)."""

    def __init__(self, program: str = _BOOT) -> None:
        self.process = start_interpreter(
            program, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        for stream in (self.process.stdin, self.process.stdout):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)  # a stuck helper must not block a write or a read

    def judge(self, request: bytes, timeout: float | None = None) -> object:
        """Send one request and return its JSON answer within `timeout` (`REPLAY_TIMEOUT` when None), or raise
        (TimeoutError, EOFError, OSError, ValueError)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        deadline = time.monotonic() + (REPLAY_TIMEOUT if timeout is None else timeout)
        _send(self.process.stdin.fileno(), request, deadline)
        return json.loads(_receive(self.process.stdout.fileno(), deadline))

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
    requests, answers = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return
        game, outcome, stall_moves = pickle.loads(request)  # the trainer's own bytes
        result = judge(game, outcome, stall_moves)
        fields = {name: getattr(result, name) for name in _FIELDS}
        _send(answers, json.dumps(fields, ensure_ascii=True).encode("ascii"))
