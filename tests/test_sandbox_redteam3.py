"""Red team 3: attacks the sandbox contained, one test per class (the escapes found are in the report).

Each test states the wall that holds and would fail without it: the static checks (Unicode
normalisation of identifiers, format templates), the trainer's extraction and checks on hostile
texts (time, no exception), and seccomp and the empty root under the real builtins, where no Python
wall helps.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time

import pytest

from helpers.config import Config, SandboxConfig
from helpers.game import GameBoard
from helpers.rewards import _static_verdict
from helpers.sandbox import _play_unchecked, check_source, walls_in_force

FAST = SandboxConfig(call_timeout=0.5, game_timeout=2.0)


@pytest.mark.parametrize(
    "source",
    [
        "def strategy(board):\n    ｅｘｅｃ('x = 1')\n    return 'a'\n",
        "def strategy(board):\n    return ｇｅｔａｔｔｒ(board, 'copy') and 'a'\n",
        "def strategy(board):\n    print(print.__ｓｅｌｆ__)\n    return 'a'\n",
        "def strategy(board):\n    print(ｇｌｏｂａｌｓ())\n    return 'a'\n",
    ],
    ids=["exec", "getattr", "dunder-attribute", "globals"],
)
def test_fullwidth_identifiers_are_normalised_before_the_checks(source):
    """Python reads `ｅｘｅｃ` as `exec` (NFKC); the checks see the parsed name, not the text."""
    assert check_source(source).verdict == "forbidden"


@pytest.mark.parametrize(
    "source",
    [
        "def strategy(board):\n    print('{0:{1.__class__}}'.format(1, 2))\n    return 'a'\n",
        "def strategy(board):\n    print('{0:{1[0]}}'.format(1, [2]))\n    return 'a'\n",
        "def strategy(board):\n    f = str.format\n    print(f('{0.real}', 1))\n    return 'a'\n",
        "def strategy(board):\n    print(('{0.' + 'real}').format(1))\n    return 'a'\n",
    ],
    ids=["attribute-in-nested-spec", "item-in-nested-spec", "unbound-format", "built-template"],
)
def test_format_templates_that_read_attributes_are_refused_however_written(source):
    assert check_source(source).verdict == "forbidden"


HOSTILE_TEXTS = {
    "fences only": "```\n" * 249_000,
    "thousands of strategy blocks": "```python\ndef strategy(board):\n    return 'a'\n```\n" * 19_000,
    "channel headers": "<|channel|>" + (" " * 1000 + "<|channel|>") * 900 + "final" * 10_000 + "<|message|>",
    "one unterminated special token": "<|" + "a" * 990_000,
    "unfenced code to the end": "def strategy(board):\n" + "    x = 1\n" * 99_000,
    "imports above the def": "import x\n" * 110_000 + "def strategy(board):\n    return 'a'\n",
    "a language tag of a megabyte": "```" + "a" * 990_000 + "!\ndef strategy(board):\n    return 'a'\n```",
    "lone carriage returns": "```python\r\ndef strategy(board):\r\n    return 'a'\r\n```" + "\r" * 990_000,
    "def lines": "def strategy(\n" * 70_000,
}


def test_hostile_completions_of_a_megabyte_are_read_in_linear_time():
    """Extraction and checks on the trainer's side: each text in well under a second, and a verdict."""
    for name, text in HOSTILE_TEXTS.items():
        started = time.monotonic()
        verdict = _static_verdict(text, Config())
        assert time.monotonic() - started < 1.0, name
        assert verdict.check is None or verdict.check.verdict in ("ok", "malformed", "syntax_error"), name


@pytest.mark.parametrize(
    "body",
    [
        "    return 'a' if " + "1+" * 45_000 + "1 else 'a'",
        "    x = board" + ".copy" * 15_000 + "\n    return 'a'",
        "    x = len" + "()" * 30_000 + "\n    return 'a'",
        "    x = " + "not " * 20_000 + "1\n    return 'a'",
        "    x = " + "lambda: " * 5_000 + "1\n    return 'a'",
        "    x = 2 ** 10_000_000\n    return 'a'",
        "    x = 'a' * 4000 * 4000 * 4000\n    return 'a'",
    ],
    ids=[
        "binop-chain",
        "attribute-chain",
        "call-chain",
        "not-chain",
        "lambda-nest",
        "power",
        "string-repeat",
    ],
)
def test_compiler_bombs_get_a_verdict_quickly_and_never_raise(body):
    """Deep syntax trees end as `syntax_error` (RecursionError, MemoryError caught); constant folding
    does not build a huge value in the trainer."""
    started = time.monotonic()
    check = check_source("def strategy(board):\n" + body + "\n")
    assert time.monotonic() - started < 2.0
    assert check.verdict in ("ok", "syntax_error")


def _needs(wall: str) -> None:
    walls = walls_in_force(FAST)
    if wall not in walls:
        pytest.skip(f"no {wall} wall on this machine")


@pytest.mark.parametrize("call", ["os.setuid(0)", "os.setpgid(0, 0)", "os.pidfd_open(1)"])
def test_seccomp_kills_process_and_identity_calls_that_no_audit_event_covers(call):
    """Under the real builtins (no audit hook), calls Python does not audit are the filter's to stop."""
    _needs("seccomp")
    source = f"import os\ndef strategy(board):\n    print({call})\n    return 'a'\n"
    result = _play_unchecked(source, GameBoard(seed=1), FAST, python_walls=False)
    assert result.state == "rejected"
    assert "seccomp" in result.error


def test_a_host_file_cannot_even_be_stat_ed_under_the_real_builtins():
    """`os.stat` opens nothing and no audit event stops it: the empty root and seccomp hide the file
    (it sits in a directory every user may search, so the unprivileged user alone would not)."""
    _needs("seccomp")
    folder = tempfile.mkdtemp(prefix="redteam3_")
    try:
        os.chmod(folder, 0o755)
        secret = os.path.join(folder, f"redteam_secret_{secrets.token_hex(4)}")
        with open(secret, "w") as file:
            file.write("x" * 4321)
        os.chmod(secret, 0o600)
        result = _play_unchecked(_stat_source(secret), GameBoard(seed=1), FAST, python_walls=False)
    finally:
        shutil.rmtree(folder)
    assert result.state in ("error", "rejected")
    assert "size=" not in (result.error or "")


def _stat_source(path: str) -> str:
    """A strategy that reports the file's size in its error (the real `print` writes to /dev/null)."""
    return (
        f"import os\ndef strategy(board):\n    raise ValueError('size=' + str(os.stat({path!r}).st_size))\n"
    )
