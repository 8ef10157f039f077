"""Static checks: inspect a strategy's source without running any of it.

`check_source` parses the code, walks its syntax tree and symbol table, and says whether it may run:
one top-level `def strategy(board)`, imports from the allow-list only, no name that reaches the
interpreter's internals (dunder and private attributes, frames, code objects), no builtin or module
member that turns a string into attribute access or code (`getattr`, `operator.attrgetter`,
`functools.update_wrapper`, ...), and `str.format` only with a literal template whose fields name no
attribute or item. The lists live in `helpers.sandbox_rules`, shared with the worker's run-time walls.
"""

from __future__ import annotations

import ast
import hashlib
import string
import symtable
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from helpers.config import SandboxConfig
from helpers.sandbox_rules import FORBIDDEN_ATTRIBUTES, FORBIDDEN_BUILTINS, printable

MAX_SOURCE_CHARS = 100_000
"""Longer sources are `malformed` without being parsed."""
MAX_COMPILED_NODES = 250_000
"""Sources whose compiled form would hold more syntax nodes than this (`compiled_size`) are `syntax_error`
without being compiled. A flat program of `MAX_SOURCE_CHARS` characters holds at most about 100,000, which
CPython compiles in 0.1 s and 100 MB; red team 12's 2.3 KB of nested try/finally held 14 million and took
15 s and 3.5 GB to compile, one level deeper all the trainer's memory."""
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
    check = _check_text(source, allowed)
    with _checked_lock:
        _checked[key] = check
        while len(_checked) > CHECK_CACHE_SIZE:
            _checked.popitem(last=False)
    return check


_SHARED_NODES = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
"""Node classes `ast.parse` hands out as one shared instance each: not counted by `compiled_size`."""
_EXITS = (ast.Return, ast.Break, ast.Continue)


def compiled_size(tree: ast.AST) -> int:
    """How many syntax nodes CPython compiles for `tree`, counting a `finally` body once for each way out of its
    `try`: falling through, an exception, and every `return`, `break` or `continue` inside (3.11 writes the body
    out for each), so try/finally nested in `finally` bodies multiplies (red team 12). Exits inside nested
    functions are counted too, which only overestimates. Iterative: an `elif` chain nests as deep as it is long.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        children = [c for c in ast.iter_child_nodes(node) if not isinstance(c, _SHARED_NODES)]
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        of_child = {id(child): sizes.pop(id(child)) for child in children}
        size = 1 + sum(of_child.values())
        if isinstance(node, ast.Try | ast.TryStar) and node.finalbody:
            once = sum(of_child[id(child)] for child in node.finalbody)  # already counted once in `size`
            exits = sum(
                isinstance(inner, _EXITS)
                for part in (*node.body, *node.handlers, *node.orelse)
                for inner in ast.walk(part)
            )
            size += once * (exits + 1)
        sizes[id(node)] = size
    return sizes[id(tree)]


def _check_text(source: str, allowed: tuple[str, ...]) -> StaticCheck:
    """`check_source` for a non-empty string of at most MAX_SOURCE_CHARS characters."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
            if compiled_size(tree) > MAX_COMPILED_NODES:  # compiling it would stall or exhaust the trainer
                return StaticCheck(
                    "syntax_error",
                    "the code would compile to too much: try/finally blocks nested in finally blocks",
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
