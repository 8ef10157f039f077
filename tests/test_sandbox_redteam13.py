"""Red team 13: what the round found, one test per hole, each failing without its mend.

The round attacked the trainer's own work on a completion and found sources of 2-20 KB that the static check
passed as `ok` while they cost the trainer seconds and gigabytes: returns inside `finally` bodies, which round
12's count took once where the compiler writes them once per copy of the body (2.4 KB: 2.3 s and 1.1 GB);
`match` patterns binding many names (two alternatives of 500 names: 4 s and 2.6 GB); lambdas nested 600 deep
closing over 2,500 names (19 KB: 11 s). The count now follows compiled exits and pattern captures, and every
check runs in a checker process of its own, under a CPU and a memory limit, so what no count foresees costs
the trainer nothing.
"""

from __future__ import annotations

import ast
import keyword
import os
import resource
import string
import sys
import time
import uuid
from collections import OrderedDict

import pytest

from helpers import sandbox_checks, sandbox_replay
from helpers.rewards import explain
from helpers.sandbox import check_source
from helpers.sandbox_checks import MAX_COMPILED_NODES, compiled_size


def returns_in_finally(levels: int = 7, returns: int = 2, inner: int = 2, names: int = 200) -> str:
    """Try/finally nested `levels` deep in `finally` bodies, `inner` returns in the innermost body, all inside
    a try whose own `finally` holds a list of `names` names."""
    lines = ["def strategy(board):", "    try:"]
    indent = "        "
    for _ in range(levels):
        lines.append(indent + "try:")
        lines += [indent + "    if board: return"] * returns
        lines.append(indent + "finally:")
        indent += "    "
    lines += [indent + "if board: return"] * inner
    lines += ["    finally:", "        x = [" + "board," * names + "]", "    return 'a'"]
    return "\n".join(lines) + "\n"


def rotated(n: int) -> list[int]:
    """The order of n names that makes the compiler rotate the most to match it to 0..n-1."""
    order = list(range(n))
    for i in range(1, n):
        order[: i + 1] = order[1 : i + 1] + order[:1]
    return order


def or_pattern(n: int) -> str:
    names = [f"a{i}" for i in range(n)]
    first, second = ", ".join(names), ", ".join(names[i] for i in rotated(n))
    return (
        "def strategy(board):\n    match board:\n"
        f"        case [{first}] | [{second}]:\n            return 'a'\n    return 'w'\n"
    )


def sequence_pattern(n: int) -> str:
    names = ", ".join(f"a{i}" for i in range(n))
    return f"def strategy(board):\n    match board:\n        case [{names}]:\n            return 'a'\n    return 'w'\n"


def nested_lambdas(depth: int, count: int) -> str:
    letters = string.ascii_letters
    names = [a + b + c for a in letters for b in letters for c in letters]
    names = [name for name in names if not keyword.iskeyword(name)][:count]
    return (
        "def strategy(board):\n    " + "=".join(names) + "=0\n"
        "    f = " + "lambda:" * depth + "(" + ",".join(names) + ")\n    return 'a'\n"
    )


@pytest.mark.parametrize(
    "source",
    [returns_in_finally(), or_pattern(300), sequence_pattern(2_000)],
    ids=["returns in finally bodies", "or-pattern of 300 names", "sequence pattern of 2,000 names"],
)
def test_what_the_compiler_multiplies_is_counted_and_refused_without_compiling(compiled, source):
    assert len(source) < 20_000
    assert compiled_size(ast.parse(source)) > MAX_COMPILED_NODES
    check = sandbox_checks._check_text(source, ())
    assert check.verdict == "syntax_error" and "compile to too much" in check.reason, check
    assert compiled == []
    row = explain([f"```python\n{source}```"], None, [3407])[0]
    assert row["function_works"] < 0 and "compile to too much" in row["reason"], row


def test_a_return_in_a_finally_body_counts_once_per_copy_of_the_body():
    def size(inner_final: str) -> int:
        source = (
            "def f(b):\n    try:\n        try:\n            pass\n        finally:\n"
            f"            {inner_final}\n    finally:\n        x = [" + "b, " * 10 + "]\n"
        )
        return compiled_size(ast.parse(source))

    outer_final = compiled_size(ast.parse("x = [" + "b, " * 10 + "]")) - 1  # without its module
    # The inner finally body is written twice (falling through, an exception), so its return is compiled
    # twice, and the outer finally body is written 2 + 2 times instead of 2: two copies more.
    assert size("if b: return") - size("pass") == 2 * outer_final + 2 * (3 - 1)


def test_a_board_pattern_stays_well_under_the_count():
    names = [f"c{i}" for i in range(36)]
    board = "[" + ", ".join(names[:6]) + "]"  # one row, and the whole board as rows
    rows = "[" + ", ".join("[" + ", ".join(names[6 * r : 6 * r + 6]) + "]" for r in range(6)) + "]"
    source = (
        "def strategy(board):\n    match board:\n"
        f"        case {rows} | {rows}:\n            return 'a'\n"
        f"        case [{board}, *rest]:\n            return 'w'\n    return 'i'\n"
    )
    assert compiled_size(ast.parse(source)) < MAX_COMPILED_NODES // 2
    assert check_source(source).verdict == "ok"


def test_a_check_that_outruns_its_limits_costs_the_trainer_nothing():
    source = nested_lambdas(600, 2_500)  # 19 KB: about 11 s of compiling where the trainer checked it
    assert compiled_size(ast.parse(source)) < MAX_COMPILED_NODES  # no count foresees it
    before = resource.getrusage(resource.RUSAGE_SELF)
    check = check_source(source)
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert check.verdict == "syntax_error" and "s of CPU" in check.reason, check
    spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert spent < 0.5  # the work was the checker's, and it was stopped
    honest = f"def strategy(board):\n    return 'a' if board else 'w'  # {uuid.uuid4().hex}\n"
    assert check_source(honest).verdict == "ok"  # the next check starts a fresh checker


def test_a_checker_killed_between_checks_is_replaced():
    def fresh() -> str:  # a source no earlier check has cached
        return f"def strategy(board):\n    return 'i'  # {uuid.uuid4().hex}\n"

    assert check_source(fresh()).verdict == "ok"
    process = sandbox_checks._CHECKER._helper.process
    assert process is not None and process.poll() is None
    process.kill()
    process.wait()
    assert check_source(fresh()).verdict == "ok"
    assert sandbox_checks._CHECKER._helper.process is not process


SOURCES = [
    "def strategy(board):\n    return 'a'\n",
    "import os\ndef strategy(board):\n    return 'a'\n",
    "def strategy(board):\n    return getattr(board, 'x')\n",
    "def strategy(board, extra):\n    return 'a'\n",
    "def strategy(board):\n    return 'a\udc80'\n",  # a lone surrogate travels as it is
    "def strategy(board:\n",
    "x = 1\n",
]
ALLOWED = tuple(sandbox_checks.SandboxConfig().allowed_imports)


@pytest.fixture
def uncached(monkeypatch):
    """No verdict remembered from earlier tests: every check goes to the checker."""
    monkeypatch.setattr(sandbox_checks, "_checked", OrderedDict())


def test_the_checker_gives_the_verdicts_of_the_check_itself(uncached):
    for source in SOURCES:
        assert sandbox_checks._CHECKER.check(source, ALLOWED) == sandbox_checks._check_text(source, ALLOWED)
        assert check_source(source) == sandbox_checks._check_text(source, ALLOWED)


def test_an_interrupted_check_leaves_no_answer_for_the_next(uncached, monkeypatch):
    check_source(f"def strategy(board):\n    return 'a'  # {uuid.uuid4().hex}\n")  # a checker is running

    def interrupted(helper, request, timeout):  # Ctrl-C while the checker's answer arrives
        sandbox_replay._send(helper.process.stdin.fileno(), request)
        time.sleep(0.05)
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(sandbox_replay._Helper, "judge", interrupted)
        with pytest.raises(KeyboardInterrupt):
            check_source("def strategy(board):\n    return 'a'  # fine\n")
    assert check_source(SOURCES[1]).verdict == "forbidden"  # not the interrupted request's "ok"


def test_without_a_checker_the_checks_run_here_with_a_warning(uncached, monkeypatch):
    checker = sandbox_checks._Checker()
    monkeypatch.setattr(sys, "executable", "/bin/false")  # starts, and never says it is ready
    with pytest.warns(UserWarning, match="no checker process"):
        verdicts = [checker.check(source, ALLOWED) for source in SOURCES]
    assert verdicts == [sandbox_checks._check_text(source, ALLOWED) for source in SOURCES]
    monkeypatch.setattr(sys, "executable", "")
    with pytest.warns(UserWarning, match="sys.executable is empty"):
        assert sandbox_checks._Checker().check(SOURCES[1], ALLOWED).verdict == "forbidden"


def test_the_checker_starts_apart_from_the_working_folder(uncached, tmp_path, monkeypatch):
    (tmp_path / "dataclasses.py").write_text("raise SystemExit('a stray module')\n")  # shadows the stdlib's
    monkeypatch.chdir(tmp_path)
    checker = sandbox_checks._Checker()
    try:
        assert checker.check(SOURCES[0], ALLOWED).verdict == "ok"
    finally:
        checker.stop()


def test_a_forked_child_checks_with_a_checker_of_its_own():
    assert check_source(f"def strategy(board):\n    return 'a'  # {uuid.uuid4().hex}\n").verdict == "ok"
    parents = sandbox_checks._CHECKER._helper.process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            verdict = check_source(f"def strategy(board):\n    return 'u'  # {uuid.uuid4().hex}\n").verdict
            own = sandbox_checks._CHECKER._helper.process is not parents
            os.write(write, f"{verdict} {own}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 100).decode() == "ok True"
    os.close(read)
    assert (
        sandbox_checks._CHECKER._helper.process is parents and parents.poll() is None
    )  # the parent's is untouched
