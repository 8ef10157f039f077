"""Run the strategies the model writes: extract them, check them, play them in guarded worker processes.

The flow for one completion: `extract_function` finds the `def strategy(board)` in the text,
`check_source` inspects its syntax tree without running anything, and only code that passes is played,
in a pool of persistent worker processes (`play_batch` for many sources and seeds at once,
`execute_strategy` for one game).

Execution model. Each worker is a fresh interpreter started with `subprocess` (`python -I -S -c`), not
`multiprocessing`: it never imports the caller's `__main__`, so the pool works from a notebook kernel,
from a script without a main guard and from `python -` reading stdin, and it inherits nothing from a
parent that has already initialised CUDA. The worker receives a plain `GameBoard` copy of the game,
plays the whole game itself (a round trip to the parent per move would cost more than the strategies
do) and logs every key it plays into a page of memory shared with the parent. The verdict is the
parent's: it replays the logged keys on the caller's game, so even a strategy that broke every wall
inside the worker could only choose moves, never declare a win, and a strategy only ever sees a fresh
copy of the board. The replayed keys come back in `GameResult.keys`, to show the game move by move.
A game that cannot be sent (not a `GameBoard`, or one that does not pickle) raises before any worker
sees it, and a batch ended by an exception replaces the workers it left busy, so the pool stays
usable. The parent enforces the time limits from outside: the worker writes the start time of each
`strategy(board)` call into the shared page, and the parent kills the worker (SIGKILL to its process
group) when a call runs over `call_timeout` (0.5 s) or the game over `game_timeout` (5 s). A kill
cannot be caught and stops C-level loops such as `sum(range(10**12))`; a killed worker is replaced at
once. A run of `stall_moves` moves that change nothing ends the game as `stalled` without waiting for
a timeout.

The walls, in the order code meets them:
1. Static checks (`check_source`): exactly one top-level `def strategy(board)` and nothing else but a
   docstring and imports; imports only from `SandboxConfig.allowed_imports`; no dunder or private
   (`_x`) attribute, no dunder name, no frame/generator/code/traceback attributes (`gi_frame`,
   `f_back`, ...), none of the members that turn strings into attribute access or code
   (`operator.attrgetter`, `methodcaller`, `typing.get_type_hints`, `ForwardRef`), no attribute named
   like a dangerous module (`typing.sys`, `statistics.sys`), and no use of `eval`, `exec`, `compile`,
   `open`, `globals`, `locals`, `vars`, `getattr`, `setattr`, `delattr`, `breakpoint`, `input`,
   `memoryview`, `type`, `exit`, `quit`, `help`. Code that fails never runs.
2. Restricted builtins: only a safe list; `import` hands out stripped copies of allowed modules
   (no private members, no module-valued members outside the allow-list, so `typing.sys` is absent).
3. An audit hook (PEP 578, which cannot be removed) ends the worker at the first forbidden operation:
   opening a file, any `os.*`/`subprocess`/`socket`/`ctypes`/`gc`/`signal` event, reading a frame or
   code object (`gi_frame`, `tb_frame`, `__code__`), loading a module. The game ends as `rejected`.
4. Resource limits on the worker: address space (`memory_mb`), CPU seconds per game, no file writes
   (`RLIMIT_FSIZE=0`), no new processes (`RLIMIT_NPROC=0`), no core dumps.
5. The parent's kill on timeout and its replay of the logged keys.
A strategy that assigns attributes (`random.choice = ...`, `collections.Counter.x = ...`) gets a
worker of its own that is replaced after its game, so it cannot change what the next strategy sees.

What this does NOT protect against. It is not a security boundary against a determined attacker:
CPython itself is the attack surface (an interpreter or kernel exploit, a crafted object that
crashes the interpreter and more), there is no network, filesystem or PID namespace, no seccomp
filter, and the worker runs as the same user as the trainer. Run as root, `RLIMIT_NPROC` is not
enforced by the kernel. `RLIMIT_AS` is not enforced on macOS; Windows is not supported at all.
It protects the training run from what a language model plausibly writes: code that cheats at the
game, reaches for the game's internals, loops forever, eats memory, prints without end or crashes.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import json
import mmap
import os
import pickle
import re
import selectors
import signal
import struct
import subprocess
import symtable
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from helpers import _sandbox_worker as worker
from helpers.config import GameConfig, SandboxConfig
from helpers.game import GameBoard, from_config

MAX_SOURCE_CHARS = 100_000
"""Longer sources are `malformed` without being parsed."""

FORBIDDEN_BUILTINS = frozenset(
    (  # noqa: SIM905 - a word list reads better than a column
        "eval exec compile open __import__ globals locals vars getattr setattr delattr breakpoint input "
        "memoryview type exit quit help"
    ).split()
)
"""Builtins a strategy may not name (where the name is not its own variable)."""

FORBIDDEN_ATTRIBUTES = frozenset(
    (  # noqa: SIM905 - a word list reads better than a column
        "gi_frame gi_code gi_yieldfrom gi_suspended cr_frame cr_code cr_await cr_origin ag_frame ag_code "
        "ag_await f_back f_globals f_locals f_builtins f_code f_trace f_lasti f_lineno tb_frame tb_next "
        "tb_lasti co_code co_consts co_names mro attrgetter methodcaller get_type_hints ForwardRef "
        "evaluate_forward_ref sys os subprocess builtins importlib ctypes gc signal types inspect socket "
        "shutil threading multiprocessing marshal pickle resource mmap pathlib tempfile posix"
    ).split()
)
"""Attribute names that reach frames, code, string-driven attribute access or dangerous modules."""

STATES = ("success", "failed", "timeout", "stalled", "error", "rejected")
"""Every `GameResult.state`."""

_DEFINES_STRATEGY = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+strategy[ \t]*\(", re.M)
_FINAL_MARKER = re.compile(r"<\|channel\|>[ \t]*final\b.*?<\|message\|>|assistantfinal", re.S)
_END_OF_MESSAGE = re.compile(r"<\|(?:end|return|call)\|>")
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")
_LANGUAGE_TAG = re.compile(r"[\w+.#-]*[ \t]*")
_CODE_LINE_STARTS = ("def ", "async def ", "class ", "import ", "from ", "@", "#", ")", "]", "}")
_RUNS_CODE = (
    ast.Call,
    ast.Lambda,
    ast.NamedExpr,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
)


# --- extraction -----------------------------------------------------------------------------------


def _fenced_blocks(text: str) -> list[str]:
    """The contents of ``` blocks, the language tag dropped; an unterminated last block runs to the end."""
    pieces = text.split("```")
    blocks = []
    for piece in pieces[1::2]:
        first, newline, rest = piece.partition("\n")
        blocks.append(rest if newline and _LANGUAGE_TAG.fullmatch(first) else piece)
    return blocks


def _unfenced(text: str) -> str | None:
    """Code written without fences: from the imports above `def strategy` to the first line of prose."""
    lines = text.split("\n")
    start = next(
        (i for i, line in enumerate(lines) if _DEFINES_STRATEGY.match(line) and line[:1].strip()), None
    )
    if start is None:
        return None
    end = start + 1
    while start > 0 and lines[start - 1].startswith(("import ", "from ", "@")):
        start -= 1
    while end < len(lines) and (
        not lines[end].strip() or lines[end][0] in " \t" or lines[end].startswith(_CODE_LINE_STARTS)
    ):
        end += 1
    return "\n".join(lines[start:end])


def _tidy(code: str) -> str:
    code = _SPECIAL_TOKEN.sub("", code)
    return textwrap.dedent(code).strip("\n").rstrip() + "\n"


def extract_function(text: object) -> str | None:
    """The source of the `def strategy(board)` a completion proposes, or None when there is none.

    gpt-oss writes an analysis and then a final answer; decoded without special tokens a completion
    reads `analysis...assistantfinal...`, with them `<|channel|>final<|message|>...`. The final answer's
    last ``` block that defines `strategy` wins, then the last such block anywhere, then unfenced code
    that starts at a `def strategy(` line. Fences without a language tag, CRLF line ends, prose around
    the code and a final fence that was never closed (a completion cut at its token limit) are fine.

    Example:
        >>> extract_function("analysis...assistantfinal```python\\ndef strategy(board):\\n    return 'a'\\n```")
        "def strategy(board):\\n    return 'a'\\n"
    """
    if not isinstance(text, str):
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    regions = [text]
    markers = list(_FINAL_MARKER.finditer(text))
    if markers:
        final = text[markers[-1].end() :]
        end = _END_OF_MESSAGE.search(final)
        regions.insert(0, final[: end.start()] if end else final)
    for region in regions:
        blocks = [block for block in _fenced_blocks(region) if _DEFINES_STRATEGY.search(block)]
        if blocks:
            return _tidy(blocks[-1])
    for region in regions:
        code = _unfenced(region)
        if code is not None:
            return _tidy(code)
    return None


# --- static checks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticCheck:
    """What `check_source` found, before anything ran."""

    verdict: str
    """`ok`, `syntax_error`, `malformed` (parses, wrong shape) or `forbidden` (an escape or a banned import)."""
    reason: str
    """The first problem found, with its line, or a short confirmation."""
    well_formed: bool
    """The shape alone is right (one top-level `def strategy(board)`), whether or not it is forbidden."""
    stores_attributes: bool = False
    """The code assigns or deletes attributes: it gets a worker of its own, replaced after its game."""


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _identifier_problems(node: ast.AST) -> Iterable[str]:
    """Dunder names among a node's identifiers (`id`, `attr`, `name`, `arg`, `kwd_attrs`, ...)."""
    if isinstance(node, ast.Constant):
        return
    if isinstance(node, ast.Name) and node.id == "__name__" and isinstance(node.ctx, ast.Load):
        return
    for field, value in ast.iter_fields(node):
        if field == "type_comment":
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and _is_dunder(item):
                yield f"the dunder name {item}"


def _builtin_references(table: symtable.SymbolTable) -> set[str]:
    """Names that resolve to builtins: referenced, global in their scope, never bound at module level."""
    bound = {
        symbol.get_name() for symbol in table.get_symbols() if symbol.is_assigned() or symbol.is_imported()
    }
    names, stack = set(), [table]
    while stack:
        scope = stack.pop()
        for symbol in scope.get_symbols():
            if symbol.is_referenced() and symbol.is_global() and symbol.get_name() not in bound:
                names.add(symbol.get_name())
        stack.extend(scope.get_children())
    return names


def _forbidden(tree: ast.Module, table: symtable.SymbolTable, allowed: Sequence[str]) -> str | None:
    """The first escape or banned import, as `line N: what`, or None."""
    allowed_list = ", ".join(allowed) or "none"
    findings: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            findings += [
                (line, f"import of {alias.name} (allowed: {allowed_list})")
                for alias in node.names
                if alias.name.partition(".")[0] not in allowed
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__" and all(alias.name == "annotations" for alias in node.names):
                continue
            module = node.module or ""
            if node.level or module.partition(".")[0] not in allowed:
                findings.append((line, f"import from {'.' * node.level}{module} (allowed: {allowed_list})"))
            for alias in node.names:
                if alias.name == "*":
                    findings.append((line, f"from {module} import * (name what you import)"))
                elif alias.name.startswith("_") or alias.name in FORBIDDEN_ATTRIBUTES:
                    findings.append((line, f"import of {module}.{alias.name}"))
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                findings.append((line, f"the private or dunder attribute .{node.attr}"))
            elif node.attr in FORBIDDEN_ATTRIBUTES:
                findings.append((line, f"the attribute .{node.attr}"))
        findings += [(line, problem) for problem in _identifier_problems(node)]
    builtins_used = _builtin_references(table) & FORBIDDEN_BUILTINS
    findings += [
        (node.lineno, f"the builtin {node.id}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id in builtins_used
    ]
    if not findings:
        return None
    line, problem = min(findings)
    return f"line {line}: {problem}"


def _yields(function: ast.FunctionDef) -> bool:
    """Whether the function itself (not a nested function or lambda) contains yield."""
    stack = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _shape_problem(tree: ast.Module) -> str | None:
    """Why the module is not exactly `[docstring] [imports] def strategy(board)`, or None."""
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:] if isinstance(body[0].value.value, str) else body
    strategies = []
    for statement in body:
        line = statement.lineno
        if isinstance(statement, ast.Import | ast.ImportFrom):
            continue
        if isinstance(statement, ast.FunctionDef) and statement.name == "strategy":
            strategies.append(statement)
        elif isinstance(statement, ast.AsyncFunctionDef) and statement.name == "strategy":
            return f"line {line}: async def strategy (the game calls a plain function)"
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return f"line {line}: top-level {statement.name} besides strategy (put helpers inside strategy)"
        else:
            return f"line {line}: top-level code outside strategy ({type(statement).__name__})"
    if not strategies:
        return "no top-level def strategy(board)"
    if len(strategies) > 1:
        return f"strategy is defined {len(strategies)} times"
    function = strategies[0]
    line, args = function.lineno, function.args
    if len(args.posonlyargs + args.args) != 1 or args.vararg or args.kwarg or args.kwonlyargs:
        return f"line {line}: strategy must take exactly one parameter, the board"
    if args.defaults:
        return f"line {line}: a default value for strategy's parameter (it runs at definition time)"
    if function.decorator_list:
        return f"line {line}: a decorator on strategy (it runs at definition time)"
    annotations = [arg.annotation for arg in args.posonlyargs + args.args] + [function.returns]
    if any(
        isinstance(node, _RUNS_CODE)
        for annotation in annotations
        if annotation
        for node in ast.walk(annotation)
    ):
        return f"line {line}: an annotation of strategy that runs code"
    if _yields(function):
        return f"line {line}: strategy is a generator (it yields instead of returning a key)"
    return None


def check_source(source: object, config: SandboxConfig | None = None) -> StaticCheck:
    """Inspect a strategy's source without running it.

    The verdicts, in order of precedence:
    - `syntax_error`: no text, or it does not compile (`SyntaxError`, null bytes, a parser bomb).
    - `forbidden`: an import outside `allowed_imports` (relative and `*` imports included), a dunder
      name, a private or dunder attribute, a name in `FORBIDDEN_ATTRIBUTES`, or a builtin in
      `FORBIDDEN_BUILTINS` (a variable of the strategy's own with such a name is fine).
      `from __future__ import annotations` and reading `__name__` are allowed.
    - `malformed`: it compiles, but the module is not `[docstring] [imports] def strategy(board)`:
      other top-level statements or definitions (helpers belong inside strategy), no strategy or
      several, `async def`, a generator, not exactly one positional parameter, a default value, a
      decorator, or an annotation that calls something (these run at definition time), or more than
      `MAX_SOURCE_CHARS` characters.
    - `ok`: everything else; it may run.

    Args:
        source: the code, usually from `extract_function`.
        config: the allowed imports come from here (the default `SandboxConfig` when None).

    Returns:
        A `StaticCheck`. `forbidden` wins over `malformed`; `well_formed` keeps the shape's verdict.
        Example: `check_source("import os\\ndef strategy(board):\\n    return 'a'").verdict == "forbidden"`.
    """
    if not isinstance(source, str) or not source.strip():
        return StaticCheck("syntax_error", "no source code", False)
    return _check_text(source, tuple((config or SandboxConfig()).allowed_imports))


@lru_cache(maxsize=256)  # sources are at most MAX_SOURCE_CHARS: at most about 25 MB
def _check_text(source: str, allowed: tuple[str, ...]) -> StaticCheck:
    """`check_source` for a non-empty string, remembered: the rewards and the pool check each source."""
    if len(source) > MAX_SOURCE_CHARS:
        return StaticCheck("malformed", f"source longer than {MAX_SOURCE_CHARS} characters", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
            compile(tree, "<strategy>", "exec", dont_inherit=True)
            table = symtable.symtable(source, "<strategy>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        where = f"line {exc.lineno}: " if isinstance(exc, SyntaxError) and exc.lineno else ""
        message = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        return StaticCheck("syntax_error", f"{where}{message}", False)
    stores = any(
        isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del)
        for node in ast.walk(tree)
    )
    shape = _shape_problem(tree)
    forbidden = _forbidden(tree, table, allowed)
    if forbidden:
        return StaticCheck("forbidden", forbidden, shape is None, stores)
    if shape:
        return StaticCheck("malformed", shape, False, stores)
    return StaticCheck("ok", "one well-formed def strategy(board)", True, stores)


# --- playing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GameResult:
    """How one game of a strategy ended."""

    state: str
    """`success`, `failed`, `timeout`, `stalled`, `error` or `rejected` (see `STATES`)."""
    steps: int
    """Keys played (calls to strategy that returned)."""
    score: int
    """The game's final score."""
    max_tile: int
    """The largest tile at the end."""
    error: str | None = None
    """A short reason when the game did not simply end by the rules, or why it failed."""
    output: str = ""
    """What the strategy printed, cut at `SandboxConfig.max_output_chars`."""
    keys: tuple[str, ...] = ()
    """The keys the parent replayed on its game, in order (stripped; "" for an answer that is no string).

    Replaying them on a copy of the starting game gives the final game; `len(keys) == steps`, except
    that rejected code and a game of more than `MAX_RECORDED_KEYS` keys keep none.
    """

    @property
    def invalid_key(self) -> bool:
        """Whether the game ended because the strategy answered something that is not a key.

        An invalid key, an empty string or a non-string ends the game as `failed`, and only such an
        end carries an `error`: a game that ran out of moves by the rules has none.
        """
        return self.state == "failed" and self.error is not None


@dataclass
class _Job:
    source: str
    game: GameBoard
    limits: SandboxConfig
    strategy_seed: int
    own_worker: bool


_WORKER_BOOT = "import sys; sys.path.insert(0, {root!r}); from helpers._sandbox_worker import main; main()"
MAX_RECORDED_KEYS = 100_000
"""A game that played more keys keeps none in `GameResult.keys` (a 6x6 game to 2048 takes a few
thousand; only long runs of no-op moves go further), so a result holds at most 800 KB of keys."""
MAX_RESULT_BYTES = 1 << 20
"""A worker sending a larger message is killed: it is not the worker the parent started."""
STARTUP_TIMEOUT = 30.0
"""Seconds a new worker may take to say it is ready."""


def _shared_page() -> int:
    """A file descriptor of SHM_BYTES of memory (memfd on Linux, an unlinked temporary file elsewhere)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("gpt-oss-2048-sandbox", 0)
    else:
        handle, path = tempfile.mkstemp(prefix="gpt-oss-2048-sandbox-")
        os.unlink(path)
        fd = handle
    os.ftruncate(fd, worker.SHM_BYTES)
    return fd


class _Worker:
    """One worker process, the parent's ends of its pipes and the shared page."""

    def __init__(self, memory_mb: int, preload: Sequence[str]) -> None:
        job_read, self.job_fd = os.pipe()
        self.result_fd, result_write = os.pipe()
        page = _shared_page()
        self.page = mmap.mmap(page, worker.SHM_BYTES)
        root = str(Path(__file__).resolve().parent.parent)
        command = [sys.executable, "-I", "-S", "-c", _WORKER_BOOT.format(root=root)]
        command += [str(job_read), str(result_write), str(page), str(memory_mb), ",".join(preload)]
        try:
            self.process = subprocess.Popen(
                command,
                pass_fds=(job_read, result_write, page),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            self.close()
            raise
        finally:
            for fd in (job_read, result_write, page):
                os.close(fd)
        self.buffer = bytearray()
        self.ready = False
        self.spawned = time.monotonic()
        self.job: int | None = None
        self.started = 0.0

    def call_started(self) -> float:
        return struct.unpack_from("<d", self.page, worker.CALL_START)[0]

    def send(self, message: bytes) -> None:
        """Clear the shared page and write a message made by `_job_message`."""
        struct.pack_into("<dI", self.page, worker.CALL_START, 0.0, 0)
        self.page[worker.EVENT : worker.EVENT + worker.EVENT_BYTES] = bytes(worker.EVENT_BYTES)
        data = memoryview(message)
        while data:
            data = data[os.write(self.job_fd, data) :]

    def receive(self) -> list[dict] | None:
        """Messages that arrived complete; None when the worker has gone or misbehaves."""
        chunk = os.read(self.result_fd, 1 << 16)
        if not chunk:
            return None
        self.buffer += chunk
        messages = []
        while len(self.buffer) >= 4:
            (size,) = struct.unpack_from("<I", self.buffer)
            if size > MAX_RESULT_BYTES:
                return None
            if len(self.buffer) < 4 + size:
                break
            data, self.buffer = bytes(self.buffer[4 : 4 + size]), self.buffer[4 + size :]
            try:
                message = json.loads(data)
            except (ValueError, RecursionError):
                return None
            if not isinstance(message, dict):
                return None
            messages.append(message)
        return messages

    def keys_played(self) -> list[str | None]:
        """The keys logged in the shared page (None: a return value that is no usable string)."""
        (length,) = struct.unpack_from("<I", self.page, worker.LOG_LENGTH)
        data = self.page[
            worker.LOG_START : worker.LOG_START + min(length, worker.SHM_BYTES - worker.LOG_START)
        ]
        keys: list[str | None] = []
        decoded: dict[bytes, str] = {}  # one string object per distinct key, shared by the whole log
        position = 0
        while position < len(data):
            size = data[position]
            position += 1
            if size == worker.NOT_A_KEY:
                keys.append(None)
                continue
            raw = data[position : position + size]
            key = decoded.get(raw)
            if key is None:
                key = decoded[raw] = raw.decode("utf-8", "replace")
            keys.append(key)
            position += size
        return keys

    def audit_event(self) -> str:
        raw = self.page[worker.EVENT : worker.EVENT + worker.EVENT_BYTES]
        return raw.rstrip(b"\0").decode("utf-8", "replace") or "a forbidden operation"

    def kill(self) -> int:
        """End the process group at once; returns the exit status."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def close(self) -> None:
        for fd in (self.job_fd, self.result_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.page.close()


def _job_message(job: _Job) -> bytes:
    """The length-prefixed pickle a worker receives for a job, made before any worker is involved.

    Raises TypeError for a game that is not a `GameBoard` or does not pickle, ValueError for a message
    larger than the worker accepts. The worker gets a plain `GameBoard` copy of the game (a subclass's
    methods act only in the parent's replay), so a game whose class the worker cannot import (defined
    in a function or in `__main__`) plays like its base class.
    """
    if not isinstance(job.game, GameBoard):
        raise TypeError(f"the game must be a GameBoard, not {type(job.game).__name__}")
    limits = job.limits
    message = {
        "source": job.source,
        "game": GameBoard.copy(job.game),
        "stall_moves": limits.stall_moves,
        "max_output_chars": limits.max_output_chars,
        "allowed_imports": tuple(limits.allowed_imports),
        "strategy_seed": job.strategy_seed,
        "game_timeout": limits.game_timeout,
    }
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - pickling reports with many types; the caller gets one
        raise TypeError(f"this game cannot be sent to a sandbox worker: {type(exc).__name__}: {exc}") from exc
    if len(data) > worker.MAX_MESSAGE_BYTES:
        raise ValueError(
            f"this game is {len(data)} bytes pickled, more than a sandbox worker accepts"
            f" ({worker.MAX_MESSAGE_BYTES})"
        )
    return struct.pack("<I", len(data)) + data


def _death_reason(status: int, event: str) -> tuple[str, str]:
    """(state, reason) for a worker that died during a game with this exit status."""
    if status == worker.AUDIT_EXIT:
        return "rejected", f"forbidden operation at run time: {event}"
    if status == -signal.SIGXCPU:
        return "timeout", "the CPU time limit ended the game"
    if status == -signal.SIGXFSZ:
        return "rejected", "forbidden operation at run time: a file write"
    if status < 0:
        return "error", f"the worker crashed ({signal.Signals(-status).name})"
    return "error", f"the worker exited with status {status}"


def _judge(
    job: _Job, keys: list[str | None], end: str, error: str | None, output: str, claim: dict | None
) -> GameResult:
    """Replay the logged keys on the parent's game and decide how the game ended."""
    game = job.game
    first_move = game.moves
    idle, stalled, last_key, replayed = 0, False, None, 0
    for key in keys:
        if game.state() != "ongoing":
            break
        last_key = key
        replayed += 1
        if game.do_action(key):
            idle = 0
            continue
        idle += 1
        if idle >= job.limits.stall_moves and game.state() == "ongoing":
            stalled = True
            break
    state = game.state()
    if state == "ongoing":
        if stalled:
            state, error = "stalled", f"{idle} moves in a row changed nothing"
        elif end in ("timeout", "error", "rejected"):
            state = end
        else:
            state, error = "error", error or "the game stopped before its end"
    elif claim is not None and (claim.get("score"), claim.get("max_tile")) != (game.score(), game.max_tile()):
        state, error = "error", "the worker's game and the replay disagree"
    elif state == "failed" and (last_key is None or last_key.strip().lower() not in game.keymap):
        error = "returned something that is not a key" if last_key is None else f"invalid key {last_key!r}"
    recorded = (
        tuple("" if key is None else key for key in keys[:replayed]) if replayed <= MAX_RECORDED_KEYS else ()
    )
    return GameResult(state, game.moves - first_move, game.score(), game.max_tile(), error, output, recorded)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class WorkerPool:
    """Persistent worker processes that play games in parallel; see the module docstring."""

    def __init__(self, config: SandboxConfig) -> None:
        self.size = config.max_workers or min(_cpu_count(), 8)
        self.memory_mb = config.memory_mb
        self.preload = tuple(config.allowed_imports)
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.start_failures = 0
        self.workers = [self._spawn() for _ in range(self.size)]

    def _spawn(self) -> _Worker:
        return _Worker(self.memory_mb, self.preload)

    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [w.process.pid for w in self.workers]

    def run(self, jobs: Sequence[_Job]) -> list[GameResult]:
        """Play every job (in parallel over the workers); results in the jobs' order.

        A job that cannot be sent (see `_job_message`) raises before any is played. Whatever ends a
        batch early (an exception, a KeyboardInterrupt), the workers still busy with it are replaced,
        so the next call finds every worker idle.
        """
        jobs = list(jobs)
        messages = [_job_message(job) for job in jobs]
        with self.lock:
            if not self.workers:
                raise RuntimeError("this worker pool is closed; get_pool() starts a new one")
            return _Batch(self, jobs, messages).run()

    def replace(self, old: _Worker) -> _Worker:
        old.kill()
        old.close()
        new = self._spawn()
        self.workers[self.workers.index(old)] = new
        return new

    def close(self) -> None:
        """Ask every worker to quit (end of its job pipe), then kill what is left."""
        for w in self.workers:
            os.close(w.job_fd)
        deadline = time.monotonic() + 1.0
        for w in self.workers:
            try:
                w.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.kill()
            with contextlib.suppress(OSError):
                os.close(w.result_fd)
            w.page.close()
        self.workers = []


class _Batch:
    """One `WorkerPool.run`: dispatch jobs to idle workers, collect results, enforce the limits."""

    def __init__(self, pool: WorkerPool, jobs: list[_Job], messages: list[bytes]) -> None:
        self.pool = pool
        self.jobs = jobs
        self.messages = messages
        self.results: list[GameResult | None] = [None] * len(jobs)
        self.pending = deque(range(len(jobs)))
        self.selector = selectors.DefaultSelector()

    def run(self) -> list[GameResult]:
        for w in self.pool.workers:
            self.selector.register(w.result_fd, selectors.EVENT_READ, w)
        try:
            while self.pending or any(w.job is not None for w in self.pool.workers):
                for w in self.pool.workers:
                    if w.ready and w.job is None and self.pending:
                        self._dispatch(w, self.pending.popleft())
                for key, _ in self.selector.select(self._wait()):
                    self._read(key.data)
                self._enforce_limits()
        finally:
            self.selector.close()
            self._abandon()
        assert all(result is not None for result in self.results)
        return self.results

    def _abandon(self) -> None:
        """Replace the workers still playing a job of this batch (it ended early: nobody will read them)."""
        for w in list(self.pool.workers):
            if w.job is not None:
                w.job = None
                self.pool.replace(w)

    def _dispatch(self, w: _Worker, index: int) -> None:
        w.job, w.started = index, time.monotonic()
        try:
            w.send(self.messages[index])
        except OSError:  # the worker died while idle: not the strategy's fault, so play it elsewhere
            w.job = None
            self.pending.appendleft(index)
            self._start_failed(w, "the worker's job pipe closed")

    def _wait(self) -> float:
        """Seconds until the next limit could be reached (half a call limit at most)."""
        now, wait = time.monotonic(), 1.0
        for w in self.pool.workers:
            if w.job is None:
                continue
            limits = self.jobs[w.job].limits
            wait = min(wait, w.started + limits.game_timeout - now, limits.call_timeout / 2)
            started = w.call_started()
            if started:
                wait = min(wait, started + limits.call_timeout - now)
        return max(wait, 0.0) + 0.001

    def _read(self, w: _Worker) -> None:
        messages = w.receive()
        if messages is None:
            self._worker_died(w)
            return
        for message in messages:
            if "ready" in message:
                w.ready = True
                self.pool.start_failures = 0
            elif "fatal" in message and w.job is None:
                self._start_failed(w, str(message["fatal"]))
                return
            elif w.job is not None:
                self._finish(w, message)

    def _finish(self, w: _Worker, message: dict) -> None:
        index, job = w.job, self.jobs[w.job]
        end = (
            message.get("end") if message.get("end") in ("over", "stalled", "error", "log_full") else "error"
        )
        error = message.get("error") if isinstance(message.get("error"), str) else None
        output = message.get("output") if isinstance(message.get("output"), str) else ""
        keys = w.keys_played()
        self.results[index] = _judge(job, keys, end, error, output[: job.limits.max_output_chars], message)
        w.job = None
        if job.own_worker or message.get("fatal"):
            self._replace(w)

    def _worker_died(self, w: _Worker) -> None:
        status = w.kill()
        if w.job is None:
            self._start_failed(w, f"exit status {status}")
            return
        state, reason = _death_reason(status, w.audit_event())
        self._close_job(w, state, reason)

    def _close_job(self, w: _Worker, state: str, reason: str) -> None:
        job = self.jobs[w.job]
        self.results[w.job] = _judge(job, w.keys_played(), state, reason, "", None)
        w.job = None
        self._replace(w)

    def _start_failed(self, w: _Worker, reason: str) -> None:
        self.pool.start_failures += 1
        if self.pool.start_failures > 3:
            raise RuntimeError(f"sandbox workers cannot start: {reason}")
        self._replace(w)

    def _replace(self, w: _Worker) -> None:
        self.selector.unregister(w.result_fd)
        new = self.pool.replace(w)
        self.selector.register(new.result_fd, selectors.EVENT_READ, new)

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for w in list(self.pool.workers):
            if not w.ready and now - w.spawned > STARTUP_TIMEOUT:
                self._start_failed(w, f"no answer within {STARTUP_TIMEOUT:g} s")
                continue
            if w.job is None:
                continue
            limits = self.jobs[w.job].limits
            started = w.call_started()
            if started and now - started > limits.call_timeout:
                w.kill()
                self._close_job(w, "timeout", f"a call to strategy ran over {limits.call_timeout:g} s")
            elif now - w.started > limits.game_timeout:
                w.kill()
                self._close_job(w, "timeout", f"the game ran over {limits.game_timeout:g} s")


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def get_pool(config: SandboxConfig | None = None) -> WorkerPool:
    """The process-wide worker pool, started on first use and reused across calls and training steps.

    A pool with another size or memory cap is replaced; a forked child never uses its parent's pool.
    Calling it early (before CUDA) is harmless but not required: workers are fresh interpreters.
    """
    global _pool
    config = config or SandboxConfig()
    size = config.max_workers or min(_cpu_count(), 8)
    with _pool_lock:
        if (
            _pool is not None
            and _pool.owner == os.getpid()
            and (_pool.size, _pool.memory_mb) != (size, config.memory_mb)
        ):
            _pool.close()
            _pool = None
        if _pool is None or _pool.owner != os.getpid():
            _pool = WorkerPool(config)
        return _pool


def shutdown_pool() -> None:
    """Stop the workers (also done at interpreter exit)."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool.owner == os.getpid():
            _pool.close()
        _pool = None


atexit.register(shutdown_pool)


def _rejected(check: StaticCheck, game: GameBoard) -> GameResult:
    return GameResult("rejected", 0, game.score(), game.max_tile(), f"{check.verdict}: {check.reason}")


def execute_strategy(
    source: str,
    game: GameBoard,
    timeout: float | None = None,
    *,
    call_timeout: float | None = None,
    config: SandboxConfig | None = None,
) -> GameResult:
    """Play `game` to its end with an untrusted strategy; the final position is left in `game`.

    Args:
        source: the code of a `def strategy(board)` (checked first; rejected code never runs).
        game: the game to play, from its current position (a `GameBoard`; a subclass's overrides act
            only in the parent's replay, the worker plays a plain copy).
        timeout: seconds for the whole game (`SandboxConfig.game_timeout`, 5 s, when None).
        call_timeout: seconds for one call (`SandboxConfig.call_timeout`, 0.5 s, when None).
        config: every other limit (the default `SandboxConfig` when None).

    Returns:
        A `GameResult`; its `keys` replayed on a copy of the starting game give the final `game`. Example:
        >>> execute_strategy("def strategy(board):\\n    return 'x'", GameBoard(seed=0)).keys
        ('x',)

    Raises:
        TypeError: `game` is not a `GameBoard`, or cannot be pickled for the worker.
        ValueError: `game` is larger than a worker accepts (a board of thousands of rows).
    """
    limits = config or SandboxConfig()
    limits = replace(
        limits,
        game_timeout=limits.game_timeout if timeout is None else timeout,
        call_timeout=limits.call_timeout if call_timeout is None else call_timeout,
    )
    check = check_source(source, limits)
    if check.verdict != "ok":
        return _rejected(check, game)
    return get_pool(limits).run([_Job(source, game, limits, 0, check.stores_attributes)])[0]


def play_batch(
    sources: Sequence[str | None],
    game_config: GameConfig | None = None,
    seeds: Iterable[int] = (0,),
    sandbox_config: SandboxConfig | None = None,
) -> list[list[GameResult]]:
    """Play every source on every seeded game, in parallel over the worker pool.

    All sources of one call play the same seeds, so their results compare fairly; a source that
    fails the static checks (or is None) is `rejected` without running; a repeated source plays once.
    The strategy's own `random` module is seeded with the game's seed, so results are reproducible.

    Args:
        sources: strategy sources (e.g. from `extract_function`).
        game_config: the game variant (the default `GameConfig` when None).
        seeds: one game per seed.
        sandbox_config: the limits (the default `SandboxConfig` when None).

    Returns:
        `results[i][j]`: source i on seed j. Example: `play_batch([src], seeds=[1, 2])[0][1].state`.
    """
    limits = sandbox_config or SandboxConfig()
    game_config = game_config or GameConfig()
    seeds = list(seeds)
    results: list[list[GameResult | None]] = [[None] * len(seeds) for _ in sources]
    jobs: list[_Job] = []
    places: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for i, source in enumerate(sources):
        check = check_source(source, limits)
        for j, seed in enumerate(seeds):
            if check.verdict != "ok":
                results[i][j] = _rejected(check, from_config(game_config, seed))
                continue
            if (source, seed) not in places:
                places[source, seed] = []
                jobs.append(
                    _Job(source, from_config(game_config, seed), limits, seed, check.stores_attributes)
                )
            places[source, seed].append((i, j))
    if jobs:
        for result, spots in zip(get_pool(limits).run(jobs), places.values(), strict=True):
            for i, j in spots:
                results[i][j] = result
    return [[result for result in row if result is not None] for row in results]
