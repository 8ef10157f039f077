"""Static checks: inspect a strategy's source without running any of it.

`check_source` parses the code, walks its syntax tree and symbol table, and says whether it may run:
one top-level `def strategy(board)`, imports from the allow-list only, no name that reaches the
interpreter's internals (dunder and private attributes, frames, code objects), no builtin or module
member that turns a string into attribute access or code (`getattr`, `operator.attrgetter`,
`functools.update_wrapper`, ...), and `str.format` only with a literal template whose fields name no
attribute or item. The lists live in `helpers.sandbox_rules`, shared with the worker's run-time walls.
The checks run in a checker process of their own (`_Checker`) under CPU and memory limits: a hostile
source of a few KB can make the compiler's work grow far faster than its length (red teams 12 and 13).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import os
import resource
import signal
import string
import subprocess
import symtable
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from helpers.config import SandboxConfig
from helpers.sandbox_replay import _Helper, _receive, _send
from helpers.sandbox_rules import FORBIDDEN_ATTRIBUTES, FORBIDDEN_BUILTINS, printable

MAX_SOURCE_CHARS = 100_000
"""Longer sources are `malformed` without being parsed."""
MAX_COMPILED_NODES = 250_000
"""Sources whose compiled form would hold more syntax nodes than this (`compiled_size`) are `syntax_error`
without being compiled. A flat program of `MAX_SOURCE_CHARS` characters holds at most about 100,000, which
CPython compiles in 0.1 s and 100 MB; red team 12's 2.3 KB of nested try/finally held 14 million and took
15 s and 3.5 GB to compile, one level deeper all the trainer's memory."""
CHECK_CPU_SECONDS = 2.0
"""CPU seconds one check may take in the checker process (`_Checker`). Honest code takes milliseconds, a flat
program at the length limit up to 0.9 s (50,000 one-name statements)."""
CHECK_MEMORY_BYTES = 1 << 30
"""The checker process's address space (1 GiB): a check that needs more is a `MemoryError`."""
CHECK_WALL_SECONDS = 30.0
"""A check not answered within this is given up (the checker is stopped and the next check starts a fresh one)."""
CHECK_CACHE_SIZE = 4096
"""Verdicts remembered, keyed by a digest of the source (the rewards and the pool check each source)."""

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
    """The code assigns or deletes attributes (for information: every game runs in a process of its own)."""


_checked: OrderedDict[tuple[bytes, tuple[str, ...]], StaticCheck] = OrderedDict()
_checked_lock = threading.Lock()


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _is_mangled(name: str) -> bool:
    """A class-private name (`__x`, mangled to `_Class__x`) or one written already mangled (`_UserList__cast`):
    defined in a subclass, it replaces a private hook of an allowed module's class (red team 10 had
    `UserList`'s `__cast` receive the other side of every comparison)."""
    return not _is_dunder(name) and (
        name.startswith("__") or (name.startswith("_") and "__" in name.lstrip("_"))
    )


def _identifier_problems(node: ast.AST) -> Iterable[str]:
    """Dunder and class-private names among a node's identifiers (`id`, `attr`, `name`, `arg`, `kwd_attrs`,
    ...)."""
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
            elif isinstance(item, str) and _is_mangled(item):
                yield f"the class-private name {item}"


def _symbols(table: symtable.SymbolTable) -> Iterator[tuple[symtable.SymbolTable, symtable.Symbol]]:
    """Every symbol of every scope of the source, with its scope."""
    stack = [table]
    while stack:
        scope = stack.pop()
        yield from ((scope, symbol) for symbol in scope.get_symbols())
        stack.extend(scope.get_children())


def _builtin_references(table: symtable.SymbolTable) -> set[str]:
    """Names that resolve to builtins: referenced, global in their scope, never bound as a global (at module
    level, or in a function that declares it `global`)."""
    bound = {
        symbol.get_name()
        for scope, symbol in _symbols(table)
        if (scope is table or symbol.is_declared_global()) and (symbol.is_assigned() or symbol.is_imported())
    }
    return {
        symbol.get_name()
        for _, symbol in _symbols(table)
        if symbol.is_referenced() and symbol.is_global() and symbol.get_name() not in bound
    }


def _attribute_problems(name: str) -> list[str]:
    if name.startswith("_"):
        return [f"the private or dunder attribute .{name}"]
    if name in FORBIDDEN_ATTRIBUTES:
        return [f"the attribute .{name}"]
    return []


SELF_MATCHING_TYPES = frozenset(
    "bool bytearray bytes dict float frozenset int list set str tuple".split()  # noqa: SIM905
)
"""Builtin types whose class pattern `case int(x)` binds the subject itself, reading no attribute."""


def _bound_names(table: symtable.SymbolTable) -> set[str]:
    """Every name the source binds in any scope: assigned, imported, a parameter, a def or class, a
    comprehension, `for`, `with`, `except` or `match` target, a walrus."""
    return {
        symbol.get_name()
        for _, symbol in _symbols(table)
        if symbol.is_assigned() or symbol.is_imported() or symbol.is_parameter()
    }


def _in_class_bodies(tree: ast.Module) -> set[int]:
    """The ids of the class patterns whose nearest scope is a class body, where a bare name is looked up in
    the namespace the class's metaclass prepared before the builtins (red team 9 put a reader there)."""
    found, stack = (
        set(),
        [child for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for child in node.body],
    )
    while stack:
        node = stack.pop()
        if isinstance(node, ast.MatchClass):
            found.add(id(node))
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    return found


def _class_pattern_problems(node: ast.MatchClass, builtins: set[str]) -> list[str]:
    """Why a `case C(...)` pattern may read attributes by name.

    `case C(name=...)` reads the attribute `name`, so the name is checked like `.name` (and `format` as an
    unbound `str.format`). `case C(x, y)` reads the attributes that `C.__match_args__` names, strings a
    class can get from anywhere (a namedtuple's fields, an ABC's `register`): positional sub-patterns are
    allowed only on a builtin type that matches the subject itself (`case int(x)`), a name the source binds
    nowhere: `builtins` holds those names (a name rebound in one scope and used as the builtin in another was
    let through, red team 8).
    """
    problems = [problem for name in node.kwd_attrs for problem in _attribute_problems(name)]
    if "format" in node.kwd_attrs:
        problems.append("a class pattern that takes .format (call .format on a string literal)")
    if node.patterns and not (
        isinstance(node.cls, ast.Name) and node.cls.id in SELF_MATCHING_TYPES and node.cls.id in builtins
    ):
        problems.append(
            "a class pattern with positional sub-patterns on a class other than a builtin type "
            "(name the attributes: case C(x=...))"
        )
    return problems


MAX_TEMPLATE_NESTING = 4
"""Format specs nested deeper than this are refused (Python itself formats two levels at most)."""


def _template_fields(template: str) -> Iterable[str]:
    """The field names of a `str.format` template, nested ones (in format specs) included.

    Iterative, so a hostile nesting cannot exhaust the stack; `ValueError` past `MAX_TEMPLATE_NESTING`.
    """
    pending = [(template, 0)]
    while pending:
        text, depth = pending.pop()
        if depth > MAX_TEMPLATE_NESTING:
            raise ValueError("format specs nested too deep")
        for _, field, spec, _ in string.Formatter().parse(text):
            if field is not None:
                yield field
            if spec:
                pending.append((spec, depth + 1))


def _format_problems(receiver: ast.expr) -> list[str]:
    """Why `receiver.format` may read attributes by name: a template that is not a literal, or a field
    such as `{0.attr}` or `{0[key]}` (a format template reads attributes without any call)."""
    if not isinstance(receiver, ast.Constant) or not isinstance(receiver.value, str):
        return ["str.format with a template that is not a string literal (write an f-string)"]
    try:
        fields = list(_template_fields(receiver.value))
    except ValueError:
        return ["a str.format template that does not parse"]
    if any("." in field or "[" in field for field in fields):
        return ["a str.format field that reads an attribute or an item (write an f-string)"]
    return []


def _forbidden(tree: ast.Module, table: symtable.SymbolTable, allowed: Sequence[str]) -> str | None:
    """The first escape or banned import, as `line N: what`, or None."""
    allowed_list = ", ".join(allowed) or "none"
    builtins = _builtin_references(table)
    never_bound = builtins - _bound_names(table)
    in_class_bodies = _in_class_bodies(tree)
    findings: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            findings += [
                (line, f"import of {alias.name} (allowed: {allowed_list})")
                for alias in node.names
                if alias.name.partition(".")[0] not in allowed
            ]
            findings += [
                (line, f"import of {alias.name}: {problem}")
                for alias in node.names
                for part in alias.name.split(".")[1:]
                for problem in _attribute_problems(part)
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__" and all(alias.name == "annotations" for alias in node.names):
                continue
            module = node.module or ""
            if node.level or module.partition(".")[0] not in allowed:
                findings.append((line, f"import from {'.' * node.level}{module} (allowed: {allowed_list})"))
            findings += [
                (line, f"import from {module}: {problem}")
                for part in module.split(".")[1:]
                for problem in _attribute_problems(part)
            ]
            for alias in node.names:
                if alias.name == "*":
                    findings.append((line, f"from {module} import * (name what you import)"))
                elif alias.name.startswith("_") or alias.name in FORBIDDEN_ATTRIBUTES:
                    findings.append((line, f"import of {module}.{alias.name}"))
        elif isinstance(node, ast.Attribute):
            findings += [(line, problem) for problem in _attribute_problems(node.attr)]
            if node.attr == "format":
                findings += [(line, problem) for problem in _format_problems(node.value)]
        elif isinstance(node, ast.MatchClass):
            findings += [(line, problem) for problem in _class_pattern_problems(node, never_bound)]
            if node.patterns and id(node) in in_class_bodies:
                findings.append((line, "a class pattern with positional sub-patterns in a class body"))
        findings += [(line, problem) for problem in _identifier_problems(node)]
    builtins_used = builtins & FORBIDDEN_BUILTINS
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
    defined = [
        statement.name for statement in body if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    if "strategy" not in defined:
        instead = f" (it defines {', '.join(defined[:3])} instead)" if defined else ""
        return f"no function named strategy: the code needs a top-level def strategy(board){instead}"
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
      name, a private or dunder attribute (`case C(_x=...)` included), a name in `FORBIDDEN_ATTRIBUTES`,
      a class pattern with positional sub-patterns on anything but a builtin type (`case int(x)`),
      a builtin in `FORBIDDEN_BUILTINS` (a variable of the strategy's own with such a name is fine), or
      `.format` on anything but a string literal whose fields read no attribute or item.
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
        A `StaticCheck` (its reason holds printable characters only). `forbidden` wins over `malformed`;
        `well_formed` keeps the shape's verdict. Example:
        `check_source("import os\\ndef strategy(board):\\n    return 'a'").verdict == "forbidden"`.
    """
    if not isinstance(source, str) or not source.strip():
        return StaticCheck("syntax_error", "no source code", False)
    if len(source) > MAX_SOURCE_CHARS:  # before the cache, which must not hold huge texts
        return StaticCheck("malformed", f"source longer than {MAX_SOURCE_CHARS} characters", False)
    allowed = tuple((config or SandboxConfig()).allowed_imports)
    key = (hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).digest(), allowed)
    with _checked_lock:
        check = _checked.get(key)
        if check is not None:
            _checked.move_to_end(key)
            return check
    check = _CHECKER.check(source, allowed)
    with _checked_lock:
        _checked[key] = check
        while len(_checked) > CHECK_CACHE_SIZE:
            _checked.popitem(last=False)
    return check


_CHECKER_BOOT = "import sys; sys.path.insert(0, {root!r}); from helpers.sandbox_checks import serve; serve()"
_READY = b"ready"


class _Checker:
    """The process where the checks run, under limits of their own (`CHECK_CPU_SECONDS`, `CHECK_MEMORY_BYTES`).

    Parsing, compiling and walking a source cost time and memory that a hostile one of a few KB makes grow
    faster than its length: red team 12's nested `finally` bodies took 15 s and 3.5 GB, red team 13's nested
    lambdas 11 s, its patterns gigabytes. `compiled_size` turns away the kinds known; this process bounds
    the rest, out of the trainer: a check that outruns its limits ends the process and is a `syntax_error`,
    and the next check starts a fresh one. It is a trusted helper process like the replay helpers
    (`helpers.sandbox_replay._Helper`: isolated, an empty environment, at /, messages with a deadline), one
    request at a time (a lock), believed once it says it is ready; it ends when its input closes. Where it
    cannot start, the checks run here, with a warning. Whatever interrupts a request (Ctrl-C, an answer that
    is not a verdict) ends the process, so no late answer can answer the next request.
    """

    def __init__(self) -> None:
        self._helper: _Helper | None = None
        self._lock = threading.Lock()
        self._unavailable = False

    def check(self, source: str, allowed: tuple[str, ...]) -> StaticCheck:
        request = json.dumps({"source": source, "allowed": list(allowed)}).encode()
        with self._lock:
            for _attempt in range(2):  # a checker dead beforehand, or answering nonsense, is replaced once
                helper = self._started()
                if helper is None:
                    return _check_text(source, allowed)
                try:
                    answer = helper.judge(request, CHECK_WALL_SECONDS)
                    return StaticCheck(**answer)  # type: ignore[arg-type]
                except (TimeoutError, EOFError):  # it died on this source, or outran the wall clock
                    return StaticCheck("syntax_error", self._ended(), False)
                except (OSError, ValueError, TypeError):  # gone before the request, or not a verdict
                    self.stop()
                except BaseException:  # Ctrl-C in the middle: its answer must never answer the next request
                    self.stop()
                    raise
        warnings.warn("the static checks run in the trainer: the checker process failed twice", stacklevel=3)
        return _check_text(source, allowed)

    def _started(self) -> _Helper | None:
        if self._helper is not None and self._helper.process.poll() is None:
            return self._helper
        self.stop()  # a dead one: its pipes closed, its status collected
        if self._unavailable:
            return None
        problem = "sys.executable is empty"
        if sys.executable:
            try:
                helper = _Helper(_CHECKER_BOOT)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                problem = str(exc) or type(exc).__name__
            else:
                assert helper.process.stdout is not None
                with contextlib.suppress(OSError, EOFError):
                    deadline = time.monotonic() + CHECK_WALL_SECONDS
                    if _receive(helper.process.stdout.fileno(), deadline) == _READY:
                        self._helper = helper
                        return helper
                helper.close()
                problem = "it did not start"
        self._unavailable = True
        warnings.warn(f"the static checks run in the trainer: no checker process ({problem})", stacklevel=4)
        return None

    def _ended(self) -> str:
        """Stop the checker that did not answer, and say why in a verdict's words."""
        helper = self._helper
        self.stop()
        if helper is not None and helper.process.returncode == -signal.SIGPROF:
            return f"checking it took more than {CHECK_CPU_SECONDS:g} s of CPU"
        return "checking it took too much time or memory"

    def stop(self) -> None:
        """End the checker process (the next check starts another)."""
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()

    def forget(self) -> None:
        """In a forked child: the checker and the locks are the parent's. Its pipes are closed here (unbuffered,
        so nothing of the parent's is written again), and this process starts its own checker when it checks."""
        helper, self._helper = self._helper, None
        if helper is not None:
            for stream in (helper.process.stdin, helper.process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._lock = threading.Lock()


def _forget_in_child() -> None:
    global _checked_lock
    _checked_lock = threading.Lock()
    _CHECKER.forget()


_CHECKER = _Checker()
os.register_at_fork(after_in_child=_forget_in_child)


def serve() -> None:
    """The checker process: says it is ready, then answers each request (JSON: source, allowed imports) with a
    `StaticCheck` (JSON), in `helpers.sandbox_replay`'s messages, until its input closes. Each check may use
    `CHECK_CPU_SECONDS` of CPU (a profiling timer, whose signal ends the process even inside the compiler) in
    `CHECK_MEMORY_BYTES` of address space (where the system enforces it: macOS accepts the limit and does not)."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (CHECK_MEMORY_BYTES, CHECK_MEMORY_BYTES))
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the default action ends the process
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF})  # a blocked signal stays blocked across exec
    requests, answers = sys.stdin.fileno(), sys.stdout.fileno()
    _send(answers, _READY)
    while True:
        try:
            request = json.loads(_receive(requests))
        except EOFError:
            return
        signal.setitimer(signal.ITIMER_PROF, CHECK_CPU_SECONDS)
        check = _check_text(request["source"], tuple(request["allowed"]))
        signal.setitimer(signal.ITIMER_PROF, 0)
        _send(answers, json.dumps(dataclasses.asdict(check)).encode())


_SHARED_NODES = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
"""Node classes `ast.parse` hands out as one shared instance each: not counted by `compiled_size`."""
_EXITS = (ast.Return, ast.Break, ast.Continue)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_CAPTURES = (ast.MatchAs, ast.MatchStar, ast.MatchMapping)


def _captures(pattern: ast.pattern) -> int:
    """The names a `match` pattern binds."""
    return sum(
        isinstance(node, _CAPTURES) and bool(getattr(node, "name", None) or getattr(node, "rest", None))
        for node in ast.walk(pattern)
    )


def compiled_size(tree: ast.AST) -> int:
    """Roughly how many syntax nodes CPython 3.11 writes out when it compiles `tree`.

    Counted beyond the nodes themselves:
    - A `finally` body is written once for each way out of its `try`: falling through, an exception, and every
      `return`, `break` or `continue` compiled inside, so try/finally nested in `finally` bodies multiplies
      (red team 12), and so does a return inside a `finally` body, compiled once per copy of that body around
      a `finally` further out (red team 13). Exits of nested loops are counted too, which only overestimates.
    - A `match` pattern moves each name it binds past the values bound before it: captures squared; an
      or-pattern reorders every alternative's captures to the first one's: alternatives x the first one's
      captures cubed (red team 13: two alternatives of 500 names took 4 s and 2.6 GB; a board's 36 names in
      two alternatives count about 100,000).
    Iterative: an `elif` chain nests as deep as it is long.
    """
    found: dict[int, tuple[int, int]] = {}  # id(node) -> (size, exits compiled in it)
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        children = [c for c in ast.iter_child_nodes(node) if not isinstance(c, _SHARED_NODES)]
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        of_child = {id(child): found.pop(id(child)) for child in children}
        size = 1 + sum(size for size, _ in of_child.values())
        exits = int(isinstance(node, _EXITS)) + sum(exits for _, exits in of_child.values())
        if isinstance(node, ast.Try | ast.TryStar) and node.finalbody:
            final = [of_child[id(child)] for child in node.finalbody]
            final_size, final_exits = sum(size for size, _ in final), sum(exits for _, exits in final)
            copies = exits - final_exits + 2  # the ways out of the try's body, handlers and else
            size += final_size * (copies - 1)  # counted once already
            exits += final_exits * (copies - 1)
        elif isinstance(node, ast.match_case):
            ors = [inner for inner in ast.walk(node.pattern) if isinstance(inner, ast.MatchOr)]
            size += _captures(node.pattern) ** 2
            size += sum(len(inner.patterns) * _captures(inner.patterns[0]) ** 3 for inner in ors)
        if isinstance(node, _SCOPES):
            exits = 0  # a nested function's returns leave it, not the try around it
        found[id(node)] = (size, exits)
    return found[id(tree)][0]


def _check_text(source: str, allowed: tuple[str, ...]) -> StaticCheck:
    """`check_source` for a non-empty string of at most MAX_SOURCE_CHARS characters."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
            if compiled_size(tree) > MAX_COMPILED_NODES:  # compiling it would stall or exhaust the trainer
                return StaticCheck(
                    "syntax_error",
                    "the code would compile to too much (try/finally in finally bodies, or match patterns)",
                    False,
                )
            compile(tree, "<strategy>", "exec", dont_inherit=True)
            table = symtable.symtable(source, "<strategy>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        where = f"line {exc.lineno}: " if isinstance(exc, SyntaxError) and exc.lineno else ""
        message = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        return StaticCheck("syntax_error", printable(f"{where}{message}")[:300], False)
    try:
        stores = any(
            isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del)
            for node in ast.walk(tree)
        )
        shape = _shape_problem(tree)
        forbidden = _forbidden(tree, table, allowed)
    except (RecursionError, MemoryError) as exc:  # a check must judge every source, never raise
        return StaticCheck("syntax_error", f"too deeply nested to check ({type(exc).__name__})", False)
    if forbidden:
        return StaticCheck("forbidden", printable(forbidden), shape is None, stores)
    if shape:
        return StaticCheck("malformed", printable(shape), False, stores)
    return StaticCheck("ok", "one well-formed def strategy(board)", True, stores)
