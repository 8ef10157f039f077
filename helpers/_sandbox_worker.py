"""The worker process of `helpers.sandbox`: plays games with an untrusted strategy, under hard limits.

The parent starts it as `python -I -S -c "..."` (never through `multiprocessing`, so the caller's
`__main__` is never imported) and talks to it over two pipes with length-prefixed messages: jobs
come in as pickles (from the trusted parent), results go out as small JSON objects (the worker may
be compromised, so the parent never unpickles what it sends). A shared memory page tells the parent
when the current `strategy(board)` call started (so the parent can kill a call that overruns), holds
the log of keys played (so the parent can replay the game after a kill) and, if the audit hook fired,
the name of the forbidden event.

Inside the worker the strategy runs with restricted builtins, imports limited to an allow-list
(handed out as stripped copies of the modules), resource limits (address space, CPU, no file
writes, no new processes, no core dumps) and an audit hook that ends the process at the first
forbidden operation (opening a file, `os.*`, sockets, `ctypes`, `gc`, frame and code introspection,
loading a module). See `helpers.sandbox` for the threat model.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import math
import mmap
import os
import pickle
import random
import resource
import struct
import sys
import time
import types
import warnings

SHM_BYTES = 1 << 20
"""Size of the page shared with the parent: a header, then the log of keys played."""
CALL_START = 0
"""Offset of the f64 monotonic time at which the running call started (0.0 between calls)."""
LOG_LENGTH = 8
"""Offset of the u32 count of bytes used in the key log."""
EVENT = 12
"""Offset of the NUL-padded name of the audit event that ended the process."""
EVENT_BYTES = 64
"""Room for that name."""
LOG_START = 128
"""Offset where the key log starts: entries of one length byte and that many UTF-8 bytes."""
NOT_A_KEY = 255
"""Length byte of an entry that stands for a return value that is not a usable string."""
MAX_KEY_CHARS = 16
"""A stripped string longer than this is no key of any key map, and is logged as NOT_A_KEY."""
AUDIT_EXIT = 86
"""Exit status of a worker that the audit hook ended."""
MAX_MESSAGE_BYTES = 1 << 26
"""Largest job the worker accepts."""

DENIED_EVENTS = (
    "open",
    "import",
    "os.",
    "subprocess.",
    "ctypes.",
    "socket.",
    "shutil.",
    "resource.",
    "signal.",
)
DENIED_EVENTS += (
    "mmap.",
    "gc.",
    "object.__getattr__",
    "object.__delattr__",
    "code.__new__",
    "function.__new__",
)
DENIED_EVENTS += ("marshal.", "pickle.", "builtins.input", "builtins.breakpoint", "cpython.", "_thread.")
DENIED_EVENTS += (
    "sys.settrace",
    "sys.setprofile",
    "sys.addaudithook",
    "sys._current_frames",
    "sys.monitoring",
)
DENIED_EVENTS += (
    "sys.setrecursionlimit",
    "syslog.",
    "fcntl.",
    "tempfile.",
    "glob.",
    "urllib.",
    "http.",
    "ftplib.",
)
DENIED_EVENTS += ("smtplib.", "webbrowser.", "winreg.", "msvcrt.", "pdb.", "sqlite3.", "ssl.", "select.")
"""Audit events (exact names, or prefixes ending in a dot) that end the worker while a strategy runs.

Not denied, because the allowed modules raise them in normal use: `compile` and `exec`
(`collections.namedtuple`), `sys._getframe` and `object.__setattr__` (namedtuple, typing),
`builtins.id`.
"""

SAFE_BUILTINS = (  # noqa: SIM905 - a word list reads better than a column
    "abs all any ascii bin bool bytearray bytes callable chr classmethod complex dict divmod "
    "enumerate filter float format frozenset hasattr hash hex id int isinstance issubclass iter len "
    "list map max min next object oct ord pow property range repr reversed round set slice sorted "
    "staticmethod str sum super tuple zip ArithmeticError AssertionError AttributeError "
    "BaseException Exception IndexError KeyError LookupError MemoryError NameError NotImplementedError "
    "OverflowError RecursionError RuntimeError StopIteration TypeError UnboundLocalError ValueError "
    "ZeroDivisionError NotImplemented Ellipsis __build_class__"
).split()
"""Builtins a strategy may use; everything else (open, eval, getattr, type, ...) is simply absent."""

HIDDEN_ATTRIBUTES = frozenset(
    {"attrgetter", "methodcaller", "get_type_hints", "ForwardRef", "evaluate_forward_ref"}
)
"""Public members of allowed modules that turn strings into attribute access or code: left out."""

_armed = False
_shm: mmap.mmap | None = None


def _audit(event: str, _args: tuple) -> None:
    """End the process at a forbidden operation while a strategy runs (hooks cannot be removed)."""
    if _armed and (event in DENIED_EVENTS or event.startswith(DENIED_EVENTS)):
        name = event.encode("utf-8", "replace")[:EVENT_BYTES]
        _shm[EVENT : EVENT + EVENT_BYTES] = name.ljust(EVENT_BYTES, b"\0")
        os._exit(AUDIT_EXIT)


def _read_exact(fd: int, count: int) -> bytes | None:
    chunks, remaining = [], count
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    data = struct.pack("<I", len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


def _set_limits(memory_mb: int) -> None:
    """Caps that hold for the worker's whole life; each is skipped where the platform refuses it."""
    limits = [
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (getattr(resource, "RLIMIT_NPROC", None), 0),
        (resource.RLIMIT_AS, memory_mb << 20),
    ]
    for which, value in limits:
        if which is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))


def _set_cpu_budget(seconds: float) -> None:
    """Let the process use at most `seconds` more CPU time before the kernel ends it (SIGXCPU)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    budget = math.ceil(used.ru_utime + used.ru_stime + seconds) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        budget = min(budget, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (budget, hard))


class _Output:
    """Collects what a strategy prints, up to a cap; the rest is dropped without being formatted."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0

    def print(self, *args: object, sep: object = " ", end: object = "\n", **_ignored: object) -> None:
        if self.size >= self.cap:
            return
        sep = sep if type(sep) is str else " "
        end = end if type(end) is str else "\n"
        text = sep.join(map(str, args)) + end
        text = text[: self.cap - self.size]
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)


class _Imports:
    """The `__import__` a strategy sees: allowed modules only, already loaded, as stripped copies."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = frozenset(allowed)
        self.copies: dict[str, types.ModuleType] = {}

    def _is_allowed(self, name: str) -> bool:
        return name.partition(".")[0] in self.allowed

    def copy_of(self, module: types.ModuleType) -> types.ModuleType:
        """A fresh module object with the public members (changing it changes nothing shared)."""
        name = module.__name__
        if name in self.copies:
            return self.copies[name]
        copy = types.ModuleType(name)
        self.copies[name] = copy
        for key, value in list(vars(module).items()):
            if key.startswith("_") or key in HIDDEN_ATTRIBUTES:
                continue
            if isinstance(value, types.ModuleType):
                if not self._is_allowed(value.__name__):
                    continue
                value = self.copy_of(value)
            setattr(copy, key, value)
        return copy

    def __call__(self, name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level or type(name) is not str or not self._is_allowed(name):
            raise ImportError(f"import of {name!r} is not allowed")
        if name not in sys.modules:
            raise ImportError(f"module {name!r} is not available in the sandbox")
        if fromlist:
            return self.copy_of(sys.modules[name])
        return self.copy_of(sys.modules[name.partition(".")[0]])


def _builtins(output: _Output, imports: _Imports) -> dict:
    table = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    table["print"] = output.print
    table["__import__"] = imports
    return table


def _describe(exc: BaseException) -> str:
    """`Type: message`, short; formatting the message may run strategy code, so it is guarded."""
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - the strategy's exception may fail to format
        message = ""
    name = type(exc).__name__
    name = name if type(name) is str else "Exception"
    return f"{name}: {message}"[:200] if message else name


def _as_key(move: object) -> str | None:
    """The key a return value stands for, without running any of the strategy's methods.

    None for a string too long to be a key, or one that is not valid UTF-8 (a lone surrogate).
    """
    if not issubclass(type(move), str) or str.__len__(move) > 64 * MAX_KEY_CHARS:
        return None
    key = str.strip(str.__str__(move))
    if len(key) > MAX_KEY_CHARS:
        return None
    try:
        key.encode()
    except UnicodeEncodeError:
        return None
    return key


def _log_key(position: int, key: str | None) -> int:
    """Append a key to the shared log; returns the new position, or -1 when the log is full."""
    entry = bytes([NOT_A_KEY]) if key is None else bytes([len(encoded := key.encode())]) + encoded
    end = position + len(entry)
    if end > SHM_BYTES:
        return -1
    _shm[position:end] = entry
    struct.pack_into("<I", _shm, LOG_LENGTH, end - LOG_START)
    return end


def _play(job: dict) -> dict:
    """Play one game to its end; the parent replays the key log to judge it."""
    global _armed
    game = job["game"]
    output = _Output(job["max_output_chars"])
    imports = _Imports(tuple(job["allowed_imports"]))
    _preload(sorted(imports.allowed))
    namespace = {"__builtins__": _builtins(output, imports), "__name__": "strategy"}
    random.seed(job["strategy_seed"])
    struct.pack_into("<I", _shm, LOG_LENGTH, 0)
    position = LOG_START
    stall_moves = job["stall_moves"]
    idle = 0
    end, error = "over", None
    _set_cpu_budget(job["game_timeout"])
    _armed = True
    struct.pack_into("<d", _shm, CALL_START, time.monotonic())
    try:
        exec(compile(job["source"], "<strategy>", "exec", dont_inherit=True), namespace)
        strategy = namespace["strategy"]
    except BaseException as exc:  # noqa: BLE001 - whatever the module does, it is the strategy's error
        error = _describe(exc)
    struct.pack_into("<d", _shm, CALL_START, 0.0)
    while error is None and game.state() == "ongoing":
        board = game.board()
        struct.pack_into("<d", _shm, CALL_START, time.monotonic())
        try:
            key = _as_key(strategy(board))
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are errors too
            error = _describe(exc)
            break
        finally:
            struct.pack_into("<d", _shm, CALL_START, 0.0)
        position = _log_key(position, key)
        if position < 0:
            end = "log_full"
            break
        if game.do_action(key):
            idle = 0
        else:
            idle += 1
            if idle >= stall_moves and game.state() == "ongoing":
                end = "stalled"
                break
    _armed = False
    if error is not None:
        end = "error"
    return {
        "end": end,
        "error": error,
        "output": output.text(),
        "score": game.score(),
        "max_tile": game.max_tile(),
    }


def _preload(names: list[str]) -> None:
    """Import the allowed modules now: while a strategy runs, loading a module ends the worker."""
    for name in names:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def main() -> None:
    """Serve jobs until the parent closes the pipe.

    `argv`: job fd, result fd, shared page fd, memory cap in MiB, comma-separated modules to preload.
    """
    global _shm, _armed
    job_fd, result_fd, shm_fd, memory_mb = (int(arg) for arg in sys.argv[1:5])
    try:
        _shm = mmap.mmap(shm_fd, SHM_BYTES)
        import helpers.game  # noqa: F401 - the class of the pickled games

        _preload([name for name in sys.argv[5].split(",") if name] + ["collections.abc"])
        warnings.simplefilter("ignore")  # showing a warning imports modules, which would end the worker
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        sys.addaudithook(_audit)
        _set_limits(memory_mb)
    except BaseException as exc:  # noqa: BLE001 - report any start-up failure to the parent
        _send(result_fd, {"fatal": _describe(exc)})
        return
    _send(result_fd, {"ready": os.getpid()})
    while True:
        header = _read_exact(job_fd, 4)
        if header is None:
            return
        (size,) = struct.unpack("<I", header)
        if size > MAX_MESSAGE_BYTES:
            return
        data = _read_exact(job_fd, size)
        if data is None:
            return
        try:
            result = _play(pickle.loads(data))
        except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError in the game loop: report, then quit
            _armed = False
            _send(result_fd, {"end": "error", "error": "worker: " + _describe(exc), "fatal": True})
            return
        _send(result_fd, result)
