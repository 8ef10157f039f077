"""The trainer's side of the sandbox's processes: a template process, a fresh process per game.

`WorkerPool` starts the template (`helpers._sandbox_worker`) as a fresh interpreter with an empty
environment, never through `multiprocessing`: it imports nothing of the caller's `__main__` and
inherits nothing from a parent that has initialised CUDA, so the pool works from a notebook kernel, a
script without a main guard and `python -` reading stdin. The template reports the walls it could put
up (`Walls`); the pool prints them once, in one line.

For each job the pool makes a token, a memory file with the job, a fresh shared page and a fresh
result pipe, and hands the three descriptors to the template, which forks the job's process. Up to
`size` jobs run at once. The pool enforces the time limits from outside (the page holds the start of
the running `strategy(board)` call) by asking the template to kill the job's process group, and
believes a page or a result only when it carries the job's token. It returns each job's raw outcome:
the keys logged in the page and what the job said or how it died; `helpers.sandbox` judges them.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import mmap
import os
import pickle
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.runs import is_main_process
from helpers.sandbox_replay import Replayers, replayer_count, start_interpreter
from helpers.sandbox_rules import (
    ALWAYS,
    CALL_START,
    EVENT,
    EVENT_BYTES,
    LOG_LENGTH,
    LOG_START,
    MAX_MESSAGE_BYTES,
    NOT_A_KEY,
    OS_WALLS,
    SHM_BYTES,
    TOKEN,
    TOKEN_BYTES,
)

MAX_RESULT_BYTES = 1 << 20
"""A job sending a larger message is killed: it is not the job the template started."""
MAX_AUTO_WORKERS = 32
"""The most worker processes `max_workers=0` starts: one per core of this process's share, up to this."""
SKIPPED = "skipped"
"""An `Outcome.end` for a job left unplayed by `WorkerPool.run(..., stop_at_timeout=True)`."""
STARTUP_TIMEOUT = 30.0
"""Seconds a new template may take to say it is ready."""
_BOOT = "import sys; sys.path.insert(0, {root!r}); from helpers._sandbox_worker import main; main()"
_WALL_WORDS = {
    "user": "unprivileged user",
    "seccomp": "seccomp filter",
    "netns": "network and IPC namespaces",
    "pidns": "a PID namespace per job",
    "mountns": "read-only file systems (mount namespace)",
    "chroot": "an empty root directory",
}


@dataclass(frozen=True)
class Walls:
    """The walls every job of a pool runs behind; `str()` is the one line the pool prints."""

    active: tuple[str, ...]
    """Short names: those of `helpers.sandbox_rules.OS_WALLS` in force, then `ALWAYS`."""
    missing: dict[str, str] = field(default_factory=dict)
    """Operating-system walls asked for but not in force on this machine, with the reason."""
    details: dict[str, str] = field(default_factory=dict)
    """A few words on some walls (the user a job runs as)."""

    def __contains__(self, name: object) -> bool:
        return name in self.active

    def __str__(self) -> str:
        words = []
        for name in self.active:
            word = _WALL_WORDS.get(name, name)
            words.append(f"{word} ({self.details[name]})" if name in self.details else word)
        line = "sandbox walls: " + ", ".join(words)
        if self.missing:
            line += "; missing: " + "; ".join(f"{name} ({why})" for name, why in self.missing.items())
        return line


@dataclass
class Job:
    """One game to play: an untrusted source on a copy of a game, under some limits."""

    source: str
    game: GameBoard
    limits: SandboxConfig
    python_walls: bool = True
    """False only in tests of the operating-system walls: the strategy gets the real builtins."""


@dataclass
class Outcome:
    """What a job left: the keys in its page, and what it said (`claim`) or how it ended (`end`, `error`)."""

    keys: list[str | None]
    end: str
    error: str | None
    output: str
    claim: dict | None
    """The job's result message, None when it died without one."""
    event: str = ""
    """The audit event that ended it, if one did."""
    status: int | None = None
    """Its exit status (negative: the signal), when it died without a result."""


def strategy_seed(game_bytes: bytes) -> int:
    """The seed of a job's `random` module: derived from its game, so never the game's own spawn seed,
    and the same for every source that plays this game."""
    return int.from_bytes(
        hashlib.blake2b(b"strategy random\0" + game_bytes, digest_size=8).digest(), "little"
    )


def job_data(job: Job, token: bytes) -> bytes:
    """The pickle a job process receives, made before any process is involved.

    Raises TypeError for a game that is not a `GameBoard` or does not pickle, ValueError for a job
    larger than a job process accepts. The job gets a plain `GameBoard` copy of the game (a subclass's
    methods act only in the parent's replay), so a game whose class the template cannot import (defined
    in a function or in `__main__`) plays like its base class.
    """
    if not isinstance(job.game, GameBoard):
        raise TypeError(f"the game must be a GameBoard, not {type(job.game).__name__}")
    try:
        game = pickle.dumps(GameBoard.copy(job.game), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - pickling reports with many types; the caller gets one
        raise TypeError(f"this game cannot be sent to a sandbox worker: {type(exc).__name__}: {exc}") from exc
    limits = job.limits
    message = {
        "source": job.source,
        "game": game,
        "token": token,
        "stall_moves": limits.stall_moves,
        "max_output_chars": limits.max_output_chars,
        "allowed_imports": tuple(limits.allowed_imports),
        "strategy_seed": strategy_seed(game),
        "game_timeout": limits.game_timeout,
        "memory_mb": limits.memory_mb,
        "python_walls": job.python_walls,
    }
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(
            f"this game is {len(data)} bytes pickled, more than a sandbox worker accepts ({MAX_MESSAGE_BYTES})"
        )
    return data


def _memory_file(size: int, data: bytes = b"") -> int:
    """A descriptor of `size` bytes of memory holding `data` (memfd on Linux, an unlinked file elsewhere)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("gpt-oss-2048-sandbox", os.MFD_CLOEXEC)
    else:
        fd, path = tempfile.mkstemp(prefix="gpt-oss-2048-sandbox-")
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _frame(message: dict) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("<I", len(data)) + data


def _messages(buffer: bytearray) -> list[dict] | None:
    """Complete length-prefixed JSON objects at the start of `buffer` (removed from it); None if malformed."""
    messages = []
    while len(buffer) >= 4:
        (size,) = struct.unpack_from("<I", buffer)
        if size > MAX_RESULT_BYTES:
            return None
        if len(buffer) < 4 + size:
            break
        data = bytes(buffer[4 : 4 + size])
        del buffer[: 4 + size]
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            return None
        if not isinstance(message, dict):
            return None
        messages.append(message)
    return messages


class _Template:
    """The template process and the parent's end of its socket."""

    def __init__(self, config: SandboxConfig) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket = ours
        arguments = [str(theirs.fileno()), str(os.getpid()), ",".join(config.allowed_imports)]
        arguments += [",".join(config.os_walls), str(config.unprivileged_id)]
        try:
            self.process = start_interpreter(
                _BOOT,
                *arguments,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.buffer = bytearray()
        self.walls = self._wait_ready()

    def _wait_ready(self) -> Walls:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise RuntimeError(
                    f"the sandbox's template process did not start within {STARTUP_TIMEOUT:g} s"
                )
            self.socket.settimeout(remaining)
            try:
                messages = self.receive()
            finally:
                self.socket.settimeout(None)
            if messages is None:
                self.close()
                raise RuntimeError(f"the sandbox's template process ended at start ({self.process.wait()})")
            for message in messages:
                if "fatal" in message:
                    self.close()
                    raise RuntimeError(f"the sandbox's template process cannot start: {message['fatal']}")
                if "ready" in message:
                    self.socket.setblocking(False)
                    active = tuple(name for name in OS_WALLS if name in message["walls"]) + ALWAYS
                    return Walls(active, dict(message["missing"]), dict(message["details"]))

    def receive(self) -> list[dict] | None:
        """Messages that arrived complete; None when the template has gone."""
        try:
            chunk = self.socket.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            return []
        except OSError:  # reset: the template died with messages unread
            return None
        if not chunk:
            return None
        self.buffer += chunk
        return _messages(self.buffer)

    def send(self, message: dict, fds: Sequence[int] = ()) -> None:
        data = _frame(message)
        self.socket.setblocking(True)
        try:
            sent = socket.send_fds(self.socket, [data[:4]], list(fds)) if fds else 0
            self.socket.sendall(data[sent:])
        finally:
            self.socket.setblocking(False)

    def close(self) -> None:
        """Close the socket (the template then kills its jobs and exits), then make sure it has gone."""
        self.socket.close()
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class _Running:
    """A job the template was asked to start: its page, its result pipe, what has come back."""

    index: int
    number: int
    token: bytes
    page: mmap.mmap
    result_fd: int
    dispatched: float
    buffer: bytearray = field(default_factory=bytearray)
    result: dict | None = None
    closed: bool = False
    status: int | None = None


class WorkerPool:
    """A template process that forks a fresh, walled process for every game; see the module docstring."""

    def __init__(self, config: SandboxConfig) -> None:
        self.size = _pool_size(config)
        self.config = config
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.jobs_started = 0
        self.template: _Template | None = _Template(config)
        self.walls = self.template.walls
        self.replayers = Replayers(replayer_count(self.size))
        """Trusted helper processes that replay finished games (`helpers.sandbox_replay`)."""
        _report(self.walls)

    def key(self) -> tuple:
        """What a pool is made for: another key needs another pool."""
        return _pool_key(self.config)

    def template_pid(self) -> int:
        """Process id of the current template."""
        assert self.template is not None
        return self.template.process.pid

    def run(
        self,
        jobs: Sequence[Job],
        stop_at_timeout: bool = False,
        on_outcome: Callable[[int, Outcome], None] | None = None,
    ) -> list[Outcome]:
        """Play every job, up to `size` at once, in the given order; outcomes in the jobs' order.

        With `stop_at_timeout`, once a job of a source runs out of time its source's jobs not yet
        started are not played: their outcome's `end` is `SKIPPED`. `on_outcome(index, outcome)` is
        called as each job that ran ends, while the others still run (it must return quickly: the limits are
        enforced between calls). A job that cannot be sent (see `job_data`) raises before any is
        played. Whatever ends a batch early (an exception, a KeyboardInterrupt), its running jobs are
        killed.
        """
        tokens = [secrets.token_bytes(TOKEN_BYTES) for _ in jobs]
        data = [job_data(job, token) for job, token in zip(jobs, tokens, strict=True)]
        with self.lock:
            if self.template is None:
                raise RuntimeError("this worker pool is closed; get_pool() starts a new one")
            return _Batch(self, list(jobs), data, tokens, stop_at_timeout, on_outcome).run()

    def restart(self) -> None:
        """Replace a template that has gone."""
        if self.template is not None:
            self.template.close()
        self.template = _Template(self.config)
        self.walls = self.template.walls

    def close(self) -> None:
        if self.template is not None:
            self.template.close()
        self.template = None
        self.replayers.close()


class _Batch:
    """One `WorkerPool.run`: start jobs, collect what they leave, enforce the limits."""

    def __init__(
        self,
        pool: WorkerPool,
        jobs: list[Job],
        data: list[bytes],
        tokens: list[bytes],
        stop_at_timeout: bool,
        on_outcome: Callable[[int, Outcome], None] | None,
    ) -> None:
        self.pool = pool
        self.stop_at_timeout = stop_at_timeout
        self.on_outcome = on_outcome
        self.jobs = jobs
        self.data = data
        self.tokens = tokens
        self.outcomes: list[Outcome | None] = [None] * len(jobs)
        self.pending = deque(range(len(jobs)))
        self.running: dict[int, _Running] = {}
        self.selector = selectors.DefaultSelector()
        self.template_failures = 0

    def run(self) -> list[Outcome]:
        self._watch_template()
        try:
            while self.pending or self.running:
                while self.pending and len(self.running) < self.pool.size:
                    self._start(self.pending.popleft())
                for key, _ in self.selector.select(self._wait()):
                    if key.data is None:
                        self._read_template()
                    elif key.data.number in self.running:
                        self._read_result(key.data)
                self._enforce_limits()
        finally:
            for running in list(self.running.values()):
                self._kill(running)
                self._forget(running)
            self.selector.close()
        assert all(outcome is not None for outcome in self.outcomes)
        return self.outcomes  # type: ignore[return-value]

    def _watch_template(self) -> None:
        assert self.pool.template is not None
        self.selector.register(self.pool.template.socket, selectors.EVENT_READ, None)

    def _start(self, index: int) -> None:
        pool = self.pool
        assert pool.template is not None
        pool.jobs_started += 1
        number = pool.jobs_started
        message, token = self.data[index], self.tokens[index]
        page_fd = _memory_file(SHM_BYTES)
        job_fd = _memory_file(len(message), message)
        result_read, result_write = os.pipe()
        try:
            page = mmap.mmap(page_fd, SHM_BYTES)
            os.set_blocking(result_read, False)
            running = _Running(index, number, token, page, result_read, time.monotonic())
            self.running[number] = running
            self.selector.register(result_read, selectors.EVENT_READ, running)
            try:
                pool.template.send({"job": number}, [job_fd, result_write, page_fd])
            except OSError:
                self._template_gone()
        finally:
            for fd in (page_fd, job_fd, result_write):
                os.close(fd)

    def _wait(self) -> float:
        """Seconds until the next limit could be reached (half a call limit at most)."""
        now, wait = time.monotonic(), 1.0
        for running in self.running.values():
            limits = self.jobs[running.index].limits
            wait = min(wait, running.dispatched + limits.game_timeout - now, limits.call_timeout / 2)
            started = _call_started(running.page)
            if started:
                wait = min(wait, started + limits.call_timeout - now)
        return max(wait, 0.0) + 0.001

    def _read_template(self) -> None:
        assert self.pool.template is not None
        messages = self.pool.template.receive()
        if messages is None:
            self._template_gone()
            return
        for message in messages:
            running = self.running.get(message.get("exit"))
            if running is None:  # a job already judged
                continue
            running.status = message["status"]
            self._read_result(running)
            if running.number in self.running:
                self._finish_dead(running)

    def _read_result(self, running: _Running) -> None:
        """Read what the job's pipe holds; finish the job at its result, or at its end without one."""
        while not running.closed:
            try:
                chunk = os.read(running.result_fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                running.closed = True
                break
            running.buffer += chunk
            messages = _messages(running.buffer)
            if messages is None or len(running.buffer) > MAX_RESULT_BYTES:
                self._finish(running, "error", "the job sent a malformed result")
                return
            if messages:
                running.result = messages[0]
                self._finish_with_result(running)
                return
        if running.closed and running.status is not None:
            self._finish_dead(running)

    def _finish_with_result(self, running: _Running) -> None:
        message = running.result or {}
        if message.get("token") != running.token.hex():
            self._finish(running, "error", "the job's result is not bound to its job")
            return
        end = (
            message.get("end") if message.get("end") in ("over", "stalled", "error", "log_full") else "error"
        )
        error = message.get("error") if isinstance(message.get("error"), str) else None
        output = message.get("output") if isinstance(message.get("output"), str) else ""
        limits = self.jobs[running.index].limits
        keys = _keys_played(running)
        self._done(running, Outcome(keys, end, error, output[: limits.max_output_chars], message))

    def _finish_dead(self, running: _Running) -> None:
        self._done(
            running,
            Outcome(_keys_played(running), "died", None, "", None, _audit_event(running), running.status),
        )

    def _finish(self, running: _Running, end: str, error: str) -> None:
        self._done(running, Outcome(_keys_played(running), end, error, "", None))

    def _done(self, running: _Running, outcome: Outcome) -> None:
        self.outcomes[running.index] = outcome
        self._kill(running)  # a job that answered and lingers is ended too
        self._forget(running)
        if self.on_outcome is not None:
            self.on_outcome(running.index, outcome)

    def _kill(self, running: _Running) -> None:
        template = self.pool.template
        if template is not None and running.status is None:
            with contextlib.suppress(OSError):
                template.send({"kill": running.number})

    def _forget(self, running: _Running) -> None:
        self.running.pop(running.number, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(running.result_fd)
        os.close(running.result_fd)
        running.page.close()

    def _template_gone(self) -> None:
        """The template died (not a strategy's doing: it runs none): start another, replay its jobs."""
        self.template_failures += 1
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.pool.template.socket)
        for running in sorted(self.running.values(), key=lambda r: r.index, reverse=True):
            self._forget(running)
            self.pending.appendleft(running.index)
        if self.template_failures > 3:
            raise RuntimeError("the sandbox's template process keeps dying")
        self.pool.restart()
        self._watch_template()

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for running in list(self.running.values()):
            limits = self.jobs[running.index].limits
            started = _call_started(running.page)
            if started and now - started > limits.call_timeout:
                self._finish(running, "timeout", f"a call to strategy ran over {limits.call_timeout:g} s")
            elif now - running.dispatched > limits.game_timeout:
                self._finish(running, "timeout", f"the game ran over {limits.game_timeout:g} s")
            else:
                continue
            if self.stop_at_timeout:
                self._skip_source(self.jobs[running.index].source)

    def _skip_source(self, source: str) -> None:
        """Leave unplayed the jobs of `source` not yet started (it ran out of time in another game)."""
        kept: deque[int] = deque()
        for index in self.pending:
            if self.jobs[index].source == source:
                self.outcomes[index] = Outcome(
                    [], SKIPPED, "not played: the strategy ran out of time", "", None
                )
            else:
                kept.append(index)
        self.pending = kept


def _call_started(page: mmap.mmap) -> float:
    return struct.unpack_from("<d", page, CALL_START)[0]


def _keys_played(running: _Running) -> list[str | None]:
    """The keys logged in the job's page (None: an answer that is no usable string); none without its token."""
    page = running.page
    if page[TOKEN : TOKEN + TOKEN_BYTES] != running.token:
        return []
    (length,) = struct.unpack_from("<I", page, LOG_LENGTH)
    data = page[LOG_START : LOG_START + min(length, SHM_BYTES - LOG_START)]
    keys: list[str | None] = []
    decoded: dict[bytes, str] = {}  # one string object per distinct key, shared by the whole log
    position = 0
    while position < len(data):
        size = data[position]
        position += 1
        if size == NOT_A_KEY:
            keys.append(None)
            continue
        raw = data[position : position + size]
        key = decoded.get(raw)
        if key is None:
            key = decoded[raw] = raw.decode("utf-8", "replace")
        keys.append(key)
        position += size
    return keys


def _audit_event(running: _Running) -> str:
    raw = running.page[EVENT : EVENT + EVENT_BYTES]
    return raw.rstrip(b"\0").decode("utf-8", "replace")


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""A container's CPU quota (cgroup v2: "<quota> <period>" in microseconds, or "max")."""


def _cpu_count() -> int:
    """The cores this process may use: its affinity, capped by a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        return max(1, min(cores, -(-int(quota) // int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or "max": no quota
        return cores


def auto_workers(processes: int = 1) -> int:
    """The pool size `max_workers=0` means: one worker per CPU core of this process's share.

    `processes` training processes on one machine split its cores (`helpers.training.for_this_process`);
    the trainer itself only waits while the games run, so it needs no core of its own. At least 1, at
    most `MAX_AUTO_WORKERS`.
    """
    return max(1, min(MAX_AUTO_WORKERS, _cpu_count() // max(1, processes)))


def _pool_size(config: SandboxConfig) -> int:
    return config.max_workers or auto_workers()


def _pool_key(config: SandboxConfig) -> tuple:
    return (_pool_size(config), tuple(config.allowed_imports), tuple(config.os_walls), config.unprivileged_id)


_reported: set[str] = set()


def _report(walls: Walls) -> None:
    """Print the walls in force (on stdout, like the trainer's other status lines), once per process
    for each distinct line; of several training processes only rank 0 prints (`walls_in_force()` tells any)."""
    line = str(walls)
    if line not in _reported:
        _reported.add(line)
        if is_main_process():  # of several training processes, rank 0 speaks
            print(line, flush=True)


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def get_pool(config: SandboxConfig | None = None) -> WorkerPool:
    """The process-wide pool, started on first use and reused across calls and training steps.

    A pool made for another size, allow-list or set of walls is replaced; a forked child never uses
    its parent's pool. Calling it early (before CUDA) is harmless but not required: the template is a
    fresh interpreter.
    """
    global _pool
    config = config or SandboxConfig()
    with _pool_lock:
        if _pool is not None and _pool.owner == os.getpid() and _pool.key() != _pool_key(config):
            _pool.close()
            _pool = None
        if _pool is None or _pool.owner != os.getpid():
            _pool = WorkerPool(config)
        return _pool


def shutdown_pool() -> None:
    """Stop the template and every job (also done at interpreter exit)."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool.owner == os.getpid():
            _pool.close()
        _pool = None


def _forget_pool_in_a_forked_child() -> None:
    """After `os.fork` (a data loader, say): drop the parent's pool and locks without touching its template."""
    global _pool, _pool_lock
    if _pool is not None and _pool.template is not None:
        with contextlib.suppress(OSError):
            _pool.template.socket.close()  # this process's copy only: the parent keeps its template
    _pool, _pool_lock = None, threading.Lock()


atexit.register(shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_a_forked_child)
