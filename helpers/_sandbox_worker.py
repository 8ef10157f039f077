"""The sandbox's template process and the job processes it forks: one fresh process per game.

The parent (`helpers.sandbox_pool`) starts the template as `python -I -S -c "..."` with an empty
environment and no descriptor but its end of a socket. The template never runs a strategy: it imports
the game and the allowed modules once, prepares the stripped copies of those modules, puts up the walls
that hold for every job (`helpers.sandbox_walls.prepare`), reports them, and then serves the parent:
each job message brings three descriptors (the job's data, the write end of its result pipe, its
shared page) and the template forks a process for it, kills it on request (its process group) and
reports how it exited. When the parent goes, the template and every job go with it.

A job process enters a PID namespace of its own (a keeper process waits for it outside), reads its
job, maps its page, roots itself in an empty deleted directory, closes every descriptor but its result
pipe, sets its resource limits, drops its user, installs its seccomp filter, and only then runs the
strategy, with restricted builtins, stripped module copies and an audit hook that no Python code can
reach (a closure registered with `sys.addaudithook`, armed until the process ends). It plays one game,
writes the keys it plays into the shared page and a small JSON result, both marked with the job's
token, and exits. Nothing it did outlives it. See docs/SANDBOX.md for the threat model.
"""

from __future__ import annotations

import builtins
import contextlib
import decimal
import fractions
import functools
import importlib
import json
import math
import mmap
import os
import pickle
import random
import resource
import select
import signal
import socket
import statistics
import struct
import sys
import time
import types
import typing
import warnings

from helpers import sandbox_walls as walls
from helpers.game import sealed_play
from helpers.sandbox_rules import (
    AUDIT_EXIT,
    CALL_START,
    DENIED_EVENTS,
    EVENT,
    EVENT_BYTES,
    LOG_LENGTH,
    LOG_START,
    MAX_KEY_CHARS,
    NOT_A_KEY,
    SAFE_BUILTINS,
    SHM_BYTES,
    SIGNAL_EXIT,
    STRING_DRIVEN_MEMBERS,
    TOKEN,
    TOKEN_BYTES,
    WALLS_EXIT,
)

_DENIED_EXACT = frozenset(event for event in DENIED_EVENTS if not event.endswith("."))
_DENIED_PREFIXES = tuple(event for event in DENIED_EVENTS if event.endswith("."))


# --- messages -------------------------------------------------------------------------------------------


def _frame(message: dict) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("<I", len(data)) + data


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


# --- what a strategy sees -------------------------------------------------------------------------------


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


def _overload(func: object) -> object:
    """`typing.overload` without its registry: the original reads `func.__code__`, an event the audit
    hook refuses, which would punish honest code as cheating. Like the original, it returns a function
    that must not be called (the implementation, defined last, replaces it)."""

    def overloaded(*args: object, **kwargs: object) -> object:
        raise NotImplementedError("an @overload signature was called instead of its implementation")

    return overloaded


_REAL_GET_ORIGIN = typing.get_origin


def _get_origin(tp: object) -> object:
    """`typing.get_origin` that never hands out a metaclass: the original answers `type` for
    `typing.Type`, and `type` called with a dict makes classes whose dunders come from strings."""
    origin = _REAL_GET_ORIGIN(tp)
    return None if isinstance(origin, type) and issubclass(origin, type) else origin


_ATOMS = (type(None), bool, int, float, complex, str, bytes, range)
"""Immutable values the copies below hand back as they are."""


def _plain_copy(value: object, deep: bool, seen: dict[int, object]) -> object:
    """A copy of plain data (the exact types of `_ATOMS`, lists, dicts, tuples, sets, frozensets and
    bytearrays, nested), through no method of the value: `seen` is this copy's own, never the caller's."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if id(value) in seen:
        return seen[id(value)]
    inner = (lambda item: _plain_copy(item, deep, seen)) if deep else (lambda item: item)
    if kind is list:
        seen[id(value)] = made = []
        made.extend(inner(item) for item in list.__iter__(value))
        return made
    if kind is dict:
        seen[id(value)] = made = {}
        for key, item in list(dict.items(value)):
            made[inner(key)] = inner(item)
        return made
    if kind is bytearray:
        return bytearray(value)
    if kind is set:
        return {inner(item) for item in set.__iter__(value)}
    if kind in (tuple, frozenset):
        return kind(inner(item) for item in kind.__iter__(value)) if deep else value
    raise TypeError(
        f"copy in the sandbox copies plain data (numbers, strings, lists, dicts, tuples, sets), not {kind.__name__}"
    )


def _copy(value: object) -> object:
    """`copy.copy` for plain data only (`_plain_copy`).

    The original rebuilds other objects through their `__reduce_ex__`, which can name a callable and a
    state that the real `getattr` and `setattr` then use with strings of the strategy's choosing: a
    method forged over a foreign object (red team 5), a method descriptor such as `str.join`.
    """
    return _plain_copy(value, False, {})


def _deepcopy(value: object, memo: object = None) -> object:
    """`copy.deepcopy` for plain data only (`_plain_copy`); a `memo` is accepted and ignored.

    The original deep-copies what `__reduce_ex__` returns through the caller's memo, so a memo mapping
    `id(str)` to any object and `id('join')` to any name turned `deepcopy(str.join, memo)` into
    `getattr(object, name)` (red team 6); a class's `__deepcopy__` could do the same to its own memo.
    """
    return _plain_copy(value, True, {})


def _is_metaclass(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, type)


def _build_class(func: object, name: object, *bases: object, **keywords: object) -> object:
    """`__build_class__` that makes no metaclass and lets no metaclass prepare a class body.

    Refused before the body runs: a `metaclass=` keyword, a base that is not a class once resolved (`class
    X(obj)` calls `type(obj)` with the body's namespace), and a metaclass with a `__prepare__` of its own (it
    chooses the namespace the body's names come from: red team 9 put a class there that made `case int(v)`
    read any attribute). Refused after: a class that derives from `type` (`class M(typing.Type)`, red team
    6); it is checked as made, so a base that answers differently when asked twice changes nothing.
    A metaclass called with a dict makes classes whose dunders come from strings (red teams 3, 5, 6).
    Keyword names are plain strings: a `str` subclass whose hash and equality changed between this check and
    the real `__build_class__` passed a `metaclass=` through (red team 19).
    """
    if any(builtins.type(key) is not str for key in keywords):
        raise TypeError("a class in the sandbox takes keyword names that are plain strings")
    if "metaclass" in keywords:
        raise TypeError("a class in the sandbox takes no metaclass")
    meta = type
    for base in types.resolve_bases(bases):
        kind = builtins.type(base)
        if not issubclass(kind, type):
            raise TypeError("a class in the sandbox derives from classes only")
        meta = kind if issubclass(kind, meta) else meta
    if any("__prepare__" in vars(klass) for klass in meta.__mro__ if klass is not type):
        raise TypeError("a class in the sandbox is not prepared by its metaclass")
    made = builtins.__build_class__(func, name, *bases, **keywords)
    if issubclass(builtins.type(made), type) and type.__subclasscheck__(type, made):
        raise TypeError("a class in the sandbox cannot derive from type")
    return made


def _guarded(function: types.FunctionType, owner: type) -> types.FunctionType:
    """`function`, refusing a `self` whose class does not really derive from `owner`."""

    def guarded(self, *args, **kwargs):
        if owner not in builtins.type(self).__mro__:
            raise TypeError(f"{owner.__name__}.{function.__name__} called on {builtins.type(self).__name__}")
        return function(self, *args, **kwargs)

    guarded.__name__, guarded.__qualname__, guarded.__doc__ = (
        function.__name__,
        function.__qualname__,
        function.__doc__,
    )
    return guarded


def _guard_unbound_methods(modules: list[types.ModuleType]) -> None:
    """In the template, before any job: the public methods (and properties) written in Python of the classes
    the allowed modules hold refuse a `self` that is not an instance of their class.

    Called through the class, such a method takes any `self`: `collections.Counter.copy(int)` is
    `int.__class__(int)`, the builtin `type` (red team 9), and `ChainMap.new_child` calls the metaclass with
    arguments of the strategy's choosing. Called on an instance, nothing changes.
    """
    classes: set[type] = set()
    for module in modules:
        for key, value in list(vars(module).items()):
            if not key.startswith("_") and isinstance(value, type) and not _is_metaclass(value):
                classes.update(klass for klass in value.__mro__ if klass is not object)
    for owner in classes:
        for key, value in list(vars(owner).items()):
            if key.startswith("_"):
                continue
            if isinstance(value, types.FunctionType):
                replacement: object = _guarded(value, owner)
            elif isinstance(value, property) and any(
                isinstance(part, types.FunctionType) for part in (value.fget, value.fset, value.fdel)
            ):
                parts = [
                    _guarded(part, owner) if isinstance(part, types.FunctionType) else part
                    for part in (value.fget, value.fset, value.fdel)
                ]
                replacement = property(*parts, value.__doc__)
            else:
                continue
            with contextlib.suppress(
                TypeError, AttributeError
            ):  # an immutable (C) class checks `self` itself
                setattr(owner, key, replacement)


class _NoFrame:
    """What `sys._getframe` answers in a job: no frame, only the module name that honest callers ask
    for (`collections.namedtuple` and `typing`'s functional forms read `f_globals['__name__']`)."""

    f_globals = types.MappingProxyType({"__name__": "strategy"})


def _seal_job() -> None:
    """In the job process only, before the strategy runs, change the real modules that the copies'
    members reach behind them.

    - `sys._getframe` (and Python 3.12's `sys._getframemodulename`) answer without a frame; the real
      `sys._getframe` is also a denied audit event, so a reference to it held elsewhere ends the job. Every
      escape of red teams 5 and 6 went from a frame to the live game.
    - The real modules' members of `SUBSTITUTES` become the substitutes: code of the allowed modules imports
      them itself (`collections.UserDict.copy` runs `import copy` and calls the real `copy.copy`, red team 7),
      out of reach of the module copies.
    """
    sys._getframe = lambda depth=0: _NoFrame()  # type: ignore[assignment]
    if hasattr(sys, "_getframemodulename"):
        sys._getframemodulename = lambda depth=0: "strategy"
    for (module, name), substitute in SUBSTITUTES.items():
        if module in sys.modules:
            setattr(sys.modules[module], name, substitute)


_REAL_LRU_CACHE = functools.lru_cache


def _lru_cache(maxsize: object = 128, typed: object = False) -> object:
    """`functools.lru_cache` without `typed`: a typed key holds `type(arg)` beside the arguments, and a key
    whose hash a strategy made collide with it compared the builtin `type` with the strategy's object, which
    handed it `type` (red team 10). Untyped, `1` and `1.0` share an entry, as `functools.cache` has them."""
    return _REAL_LRU_CACHE(maxsize)


_REAL_STATISTICS_CONVERT = statistics._convert  # type: ignore[attr-defined]


def _statistics_convert(value: object, T: object) -> object:  # noqa: N803  (statistics' own name)
    """`statistics._convert` to number types only. `mean`, `variance` and the like convert their result to the
    type of the data's items, so a list of classes made it `type(Fraction(...))`: the class of a module
    outside the allow-list (red team 12)."""
    if not (
        isinstance(T, type) and issubclass(T, (int, float, complex, fractions.Fraction, decimal.Decimal))
    ):
        raise TypeError("statistics in the sandbox works on numbers only")
    return _REAL_STATISTICS_CONVERT(value, T)


SUBSTITUTES = {
    ("typing", "overload"): _overload,
    ("typing", "get_origin"): _get_origin,
    ("copy", "copy"): _copy,
    ("copy", "deepcopy"): _deepcopy,
    ("functools", "lru_cache"): _lru_cache,
    ("statistics", "_convert"): _statistics_convert,
}
"""Members of allowed modules that the copies replace: the original trips a wall on honest use, or
hands a strategy what the walls keep from it (red teams 5, 6, 7, 10 and 12: tests/test_sandbox_redteam*.py).
A private member (`statistics._convert`) is not in the copies; `_seal_job` replaces it in the real module,
whose public functions call it."""


class _Imports:
    """The `__import__` a strategy sees: allowed modules only, already loaded, as stripped copies."""

    def __init__(self, allowed: tuple[str, ...], copies: dict[str, types.ModuleType]) -> None:
        self.allowed = frozenset(allowed)
        self.copies = copies

    def _is_allowed(self, name: str) -> bool:
        return name.partition(".")[0] in self.allowed

    def copy_of(self, module: types.ModuleType) -> types.ModuleType:
        """A fresh module object with the public members (changing it changes nothing shared).

        Left out: private names, the string-driven members of `STRING_DRIVEN_MEMBERS`, members that
        are modules outside the allow-list (so `typing.sys` is absent), type variables bound to a metaclass
        (`typing.CT_co`), aliases of a metaclass (`typing.Type`), and metaclasses (`typing.ABCMeta`:
        called with a dict, it makes a class whose dunders come from strings, such as a `__subclasshook__`
        and `__match_args__` that let a `match` class pattern read any attribute by name). Replaced: the
        members of `SUBSTITUTES`.
        """
        name = module.__name__
        if name in self.copies:
            return self.copies[name]
        copy = types.ModuleType(name)
        self.copies[name] = copy
        for key, value in list(vars(module).items()):
            if key.startswith("_") or key in STRING_DRIVEN_MEMBERS:
                continue
            if _is_metaclass(value):
                continue
            if isinstance(value, typing.TypeVar) and _is_metaclass(value.__bound__):
                continue  # typing.CT_co: its bound is `type` (red team 7)
            if _is_metaclass(getattr(value, "__origin__", None)):
                continue  # typing.Type: it hands on attribute reads to `type` (red team 8)
            if isinstance(value, types.ModuleType):
                if not self._is_allowed(value.__name__):
                    continue
                value = self.copy_of(value)
            setattr(copy, key, SUBSTITUTES.get((name, key), value))
        return copy

    def __call__(self, name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level or type(name) is not str or not self._is_allowed(name):
            raise ImportError(f"import of {name!r} is not allowed")
        module = sys.modules.get(name if fromlist else name.partition(".")[0])
        if module is None or name not in sys.modules:
            raise ImportError(f"module {name!r} is not available in the sandbox")
        return self.copy_of(module)


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


# --- one job ----------------------------------------------------------------------------------------------

_STOP = object()
"""Sent into the game instead of a key: the strategy failed, the game ends here."""


def _game(game, page: mmap.mmap, stall_moves: int):
    """The game, as a generator: it yields boards, receives keys, logs them, and returns how it ended.

    It plays through `helpers.game.sealed_play`, which on this generator's first `next` (before any strategy
    code runs, see `_play`) takes what it needs from the game and drops it: from then on the game's random
    generator is only in that generator's frame, and reaching a suspended generator's frame (`gi_frame`) or
    any frame (`sys._getframe`) ends the job. So a strategy that rebinds names or methods sees no tile to come.
    That is why this loop is not `helpers.game.play_keys`, whose key source would have to reach the game while
    the strategy runs; it keeps the same stall rule, and the parent's replay, which decides the verdict, goes
    through `play_keys`.
    """
    play = sealed_play(game)
    del game
    board, _, state, score, max_tile = next(play)
    position, idle, end = LOG_START, 0, "over"
    while state == "ongoing":
        key = yield board
        if key is _STOP:
            end = "error"
            break
        entry = bytes([NOT_A_KEY]) if key is None else bytes([len(encoded := key.encode())]) + encoded
        if position + len(entry) > SHM_BYTES:
            end = "log_full"
            break
        page[position : position + len(entry)] = entry
        position += len(entry)
        struct.pack_into("<I", page, LOG_LENGTH, position - LOG_START)
        board, changed, state, score, max_tile = play.send(key)
        if changed:
            idle = 0
            continue
        idle += 1
        if idle >= stall_moves and state == "ongoing":
            end = "stalled"
            break
    return end, score, max_tile


def _play(source: str, namespace: dict, moves, page: mmap.mmap) -> tuple[str, str | None, int, int]:
    """Start the game, run the strategy's module, then call it on each board: (end, error, score, max tile).

    The game starts first, so that it takes what it holds before any strategy code runs (a module's default
    arguments run when it is executed)."""
    error = None
    try:
        board = next(moves)
        struct.pack_into("<d", page, CALL_START, time.monotonic())
        try:
            exec(compile(source, "<strategy>", "exec", dont_inherit=True), namespace)
            strategy = namespace["strategy"]
        except BaseException as exc:  # noqa: BLE001 - whatever the module does, it is the strategy's error
            error = _describe(exc)
        struct.pack_into("<d", page, CALL_START, 0.0)
        while error is None:
            struct.pack_into("<d", page, CALL_START, time.monotonic())
            try:
                key = _as_key(strategy(board))
            except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are errors too
                error = _describe(exc)
                break
            finally:
                struct.pack_into("<d", page, CALL_START, 0.0)
            board = moves.send(key)
        moves.send(_STOP)
    except StopIteration as stop:
        end, score, max_tile = stop.value
        return ("error" if error is not None else end), error, score, max_tile
    raise RuntimeError("the game did not end")  # pragma: no cover - _game returns after _STOP


def _arm_audit_hook(page: mmap.mmap) -> None:
    """End the process at the first forbidden operation, from now until it exits: a denied event, or a
    function's `__code__` replaced (red team 11 swapped the code of a function the game hands its draws to).

    The hook is a closure that nothing else refers to: no Python code can reach it to switch it off,
    and hooks cannot be removed.
    """
    exact, prefixes, exit_now = _DENIED_EXACT, _DENIED_PREFIXES, os._exit

    def hook(event: str, args: tuple) -> None:
        if (
            event in exact
            or event.startswith(prefixes)
            or (event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__")
        ):
            page[EVENT : EVENT + EVENT_BYTES] = event.encode("utf-8", "replace")[:EVENT_BYTES].ljust(
                EVENT_BYTES, b"\0"
            )
            exit_now(AUDIT_EXIT)

    sys.addaudithook(hook)


def _set_limits(memory_mb: int, game_timeout: float) -> None:
    """Caps for the job's whole life; each is skipped where the platform refuses it.

    The CPU budget ends the job with SIGXCPU, or SIGKILL a second later (process 1 of a PID namespace
    ignores SIGXCPU).
    """
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + game_timeout) + 1
    limits = [
        (resource.RLIMIT_FSIZE, 0, 0),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, 8, 8),  # pipe buffers are kernel memory, which RLIMIT_AS does not count
        (getattr(resource, "RLIMIT_NPROC", None), 0, 0),
        (getattr(resource, "RLIMIT_RTPRIO", None), 0, 0),  # no real-time scheduling, whatever the host grants
        (getattr(resource, "RLIMIT_NICE", None), 0, 0),  # no priority above the trainer's
        # no POSIX timers or queued signals (kernel memory outside RLIMIT_AS); the kernel's own signals pass
        (getattr(resource, "RLIMIT_SIGPENDING", None), 0, 0),
        (resource.RLIMIT_AS, memory_mb << 20, memory_mb << 20),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
    ]
    for which, soft, hard in limits:
        if which is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (soft, hard))


def _run_job(plan: walls.Plan, copies: dict, fds: list[int], life_fd: int | None, parent: int) -> None:
    """The job process: walls up, one game, a result; never returns.

    `life_fd` (in a PID namespace) is the read end of a pipe its keeper holds open: at its end the
    keeper is gone. Otherwise `parent` is the template's pid.
    """
    job_fd, result_fd, page_fd = fds
    try:
        data = os.pread(job_fd, os.fstat(job_fd).st_size, 0)
        os.close(job_fd)
        page = mmap.mmap(page_fd, SHM_BYTES)
        os.close(page_fd)
        job = pickle.loads(data)
        del data
        # Descriptors 0-2 on pipes of its own, whose other ends are closed: reads find the end at once and
        # writes fail (EPIPE; SIGPIPE is ignored). The template's /dev/null was one open file shared by every
        # job, and locks a job attached to it (flock, F_OFD_SETLK) outlived the job and passed notes to later
        # jobs; any /dev/null shares the device's inode, where running jobs would see each other's locks.
        read_end, write_end = os.pipe()
        os.close(write_end)
        os.dup2(read_end, 0)
        os.close(read_end)
        read_end, write_end = os.pipe()
        os.close(read_end)
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        walls.enter_root(plan)
        os.dup2(result_fd, 3)
        if life_fd is not None:
            os.dup2(life_fd, 4)
        os.closerange(4 if life_fd is None else 5, max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 6))
        _set_limits(job["memory_mb"], job["game_timeout"])
        walls.seal(plan)  # death with the parent again (changing the user cleared it), before seccomp
        orphan = select.select([4], [], [], 0)[0] if life_fd is not None else os.getppid() != parent
        if life_fd is not None:
            os.close(4)
        if orphan:
            os._exit(WALLS_EXIT)
    except BaseException:  # noqa: BLE001 - a wall that failed: run nothing
        os._exit(WALLS_EXIT)
    result_fd = 3
    token = job["token"]
    page[TOKEN : TOKEN + TOKEN_BYTES] = token
    try:
        output = _Output(job["max_output_chars"])
        imports = _Imports(tuple(job["allowed_imports"]), copies)
        table = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
        table["print"], table["__import__"] = output.print, imports
        table["__build_class__"] = _build_class
        namespace = {"__builtins__": table, "__name__": "strategy"}
        moves = _game(pickle.loads(job["game"]), page, job["stall_moves"])
        source, python_walls = job["source"], job["python_walls"]
        random.seed(job["strategy_seed"])
        del job
        if python_walls:
            _seal_job()
            _arm_audit_hook(page)
        else:  # a test of the operating-system walls alone: the real builtins
            namespace = {"__name__": "strategy"}
        end, error, score, max_tile = _play(source, namespace, moves, page)
        message = {"token": token.hex(), "end": end, "error": error, "output": output.text()}
        message.update(score=score, max_tile=max_tile)
    except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError in the game loop: report it
        message = {"token": token.hex(), "end": "error", "error": "worker: " + _describe(exc)}
    with contextlib.suppress(BaseException):
        _write_all(result_fd, _frame(message))
    os._exit(0)


def _start_job(plan: walls.Plan, copies: dict, fds: list[int], closing: list[int]) -> None:
    """In the forked child: leave the template's loop, then keep or become the job process."""
    life_fd, parent = None, os.getppid()
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        os.setpgid(0, 0)
        walls.die_with_parent()
        if os.getppid() != parent:
            os._exit(WALLS_EXIT)
        if plan.pidns:
            life_fd, life_write = os.pipe()
            child = walls.enter_pid_namespace()
            if child:  # the keeper: waits outside the namespace, exits the way the job did
                for fd in [*fds, life_fd]:
                    os.close(fd)
                _, status = os.waitpid(child, 0)
                code = os.waitstatus_to_exitcode(status)
                os._exit(code if code >= 0 else SIGNAL_EXIT - code)
            os.close(life_write)
    except BaseException:  # noqa: BLE001 - no PID namespace although the probe had one: run nothing
        os._exit(WALLS_EXIT)
    _run_job(plan, copies, fds, life_fd, parent)


# --- the template -----------------------------------------------------------------------------------------


def _receive(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """One message from the parent and the descriptors that came with its header; None at the end."""
    header, fds, _, _ = socket.recv_fds(sock, 4, 3)
    if len(header) < 4:
        for fd in fds:
            os.close(fd)
        return None
    (size,) = struct.unpack("<I", header)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data), list(fds)


def _forget_spawn_key() -> None:
    """In the template: the games come pickled with their random state, so no job needs `spawn_seed`'s key;
    without it a strategy past the Python walls cannot recompute its game's tiles from a guessed seed."""
    import helpers.game

    with contextlib.suppress(AttributeError):
        del helpers.game.SPAWN_KEY


def _prepare_modules(allowed: list[str]) -> dict[str, types.ModuleType]:
    """Import the allowed modules and make their stripped copies once, for every job to inherit."""
    for name in allowed + ["collections.abc"]:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    copies: dict[str, types.ModuleType] = {}
    imports = _Imports(tuple(allowed), copies)
    for name in sorted(name for name in sys.modules if imports._is_allowed(name)):
        imports.copy_of(sys.modules[name])
    _guard_unbound_methods([sys.modules[name] for name in sorted(copies)])
    return copies


def main() -> None:
    """The template. `argv`: socket fd, parent pid, allowed modules, OS walls to try, unprivileged id."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    parent = int(sys.argv[2])
    allowed = [name for name in sys.argv[3].split(",") if name]
    requested = tuple(name for name in sys.argv[4].split(",") if name)
    user = int(sys.argv[5])
    try:
        os.environ.clear()
        walls.die_with_parent()
        walls.adopt_orphans()  # a job whose keeper was killed with it is reaped here, not left a zombie
        if os.getppid() != parent:
            return
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        warnings.simplefilter("ignore")  # showing a warning imports modules, which would end a job
        _forget_spawn_key()

        copies = _prepare_modules(allowed)
        plan = walls.prepare(requested, user)
        walls.die_with_parent()  # again: entering a user namespace cleared it
        if os.getppid() != parent:
            return
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
    except BaseException as exc:  # noqa: BLE001 - report any start-up failure to the parent
        sock.sendall(_frame({"fatal": _describe(exc)}))
        return
    ready = {"ready": os.getpid(), "walls": plan.active, "missing": plan.missing, "details": plan.details}
    sock.sendall(_frame(ready))
    _serve(sock, plan, copies, [sock.fileno(), wake_read, wake_write])


def _serve(sock: socket.socket, plan: walls.Plan, copies: dict, own_fds: list[int]) -> None:
    """Fork a process per job, kill on request, report exits; at the parent's end, kill every job."""
    jobs: dict[int, int] = {}  # pid -> job id
    wake_read = own_fds[1]
    try:
        while True:
            readable, _, _ = select.select([sock, wake_read], [], [])
            if wake_read in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if pid not in jobs:  # an orphaned job process, adopted
                    continue
                code = os.waitstatus_to_exitcode(status)
                if plan.pidns and code > SIGNAL_EXIT:
                    code = SIGNAL_EXIT - code
                sock.sendall(_frame({"exit": jobs.pop(pid), "status": code}))
            if sock not in readable:
                continue
            received = _receive(sock)
            if received is None:
                return
            message, fds = received
            if "kill" in message:
                for pid, job in jobs.items():
                    if job == message["kill"]:
                        with contextlib.suppress(OSError):
                            os.killpg(pid, signal.SIGKILL)
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                sock.sendall(_frame({"exit": message["job"], "status": WALLS_EXIT, "error": str(exc)}))
                continue
            if pid == 0:
                _start_job(plan, copies, fds, own_fds)
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)
            for fd in fds:
                os.close(fd)
            jobs[pid] = message["job"]
    finally:
        for pid in jobs:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
