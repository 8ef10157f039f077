"""Red team 17: without a PID namespace a job reached other processes of its user; no unearned reward.

Where user namespaces are refused (Docker's default profile, Ubuntu 24.04) jobs have no PID namespace, and a
job past the Python walls still had two ways to another process of its own user (the other jobs, all running as
nobody under a root trainer; the trainer itself under an unprivileged one):
- `fcntl(F_SETOWN, pid)`, `fcntl(F_SETSIG, SIGKILL)` and `O_ASYNC` on a pipe of its own made the kernel send
  SIGKILL to that pid (it killed the trainer, and an honest game beside it);
- `prlimit64(pid, ...)` set that process's limits (`RLIMIT_FSIZE` 0 left the trainer unable to write a file).
Now seccomp ends a job that calls `fcntl` with `F_SETOWN`, `F_SETOWN_EX` or `F_SETSIG`, or `prlimit64` on
another pid (and `kcmp`, `get_robust_list`, `move_pages`, `migrate_pages`, which also take one).
The tests aim at a sleeping process of their own, never at the test runner.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redteam import SECCOMP_ENDED, seccomp_only

from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.sandbox import _play_unchecked

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the walls are Linux's")


@pytest.fixture
def victim():
    """A process of this test's user that a job without a PID namespace could reach."""
    process = subprocess.Popen(["sleep", "30"])
    yield process.pid
    process.kill()
    process.wait()


def _limit(pid: int, name: str) -> str:
    line = next(
        line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith(name)
    )
    return " ".join(line.split()[len(name.split()) :])


SIGNAL_BY_SIGIO = """
import ctypes, os
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    read, write = os.pipe()
    libc.fcntl(read, 8, VICTIM)  # F_SETOWN
    libc.fcntl(read, 10, 9)  # F_SETSIG: SIGKILL
    libc.fcntl(read, 4, 0o20000)  # F_SETFL: O_ASYNC
    os.write(write, b'x')  # readable: the owner gets the signal
    raise RuntimeError('sent')
"""


def test_a_job_cannot_signal_another_process_through_sigio(victim):
    source = SIGNAL_BY_SIGIO.replace("VICTIM", str(victim))
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert (result.state, result.error) == ("rejected", SECCOMP_ENDED)
    assert Path(f"/proc/{victim}").exists() and "State:\tZ" not in Path(f"/proc/{victim}/status").read_text()


LIMIT_ANOTHER = """
import ctypes
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    zero = (ctypes.c_ulong * 2)(0, 0)
    made = libc.prlimit(VICTIM, 1, zero, None)  # prlimit64(victim, RLIMIT_FSIZE, 0)
    raise RuntimeError(f'prlimit {made}')
"""


def test_a_job_cannot_set_another_process_s_limits(victim):
    before = _limit(victim, "Max file size")
    source = LIMIT_ANOTHER.replace("VICTIM", str(victim))
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert (result.state, result.error) == ("rejected", SECCOMP_ENDED)
    assert _limit(victim, "Max file size") == before


def test_a_job_still_reads_its_own_limits_and_descriptor_flags():
    source = """
import ctypes, os, resource
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    read, write = os.pipe()
    flags = libc.fcntl(read, 3, 0)  # F_GETFL
    raise RuntimeError(f'nofile {resource.getrlimit(resource.RLIMIT_NOFILE)} flags {flags >= 0}')
"""
    config = SandboxConfig(call_timeout=2.0, game_timeout=3.0)
    result = _play_unchecked(source, GameBoard(seed=1), config, python_walls=False)
    assert result.error.endswith("nofile (8, 8) flags True"), result.error


@pytest.mark.parametrize("name", ["kcmp", "get_robust_list", "move_pages", "migrate_pages"])
def test_seccomp_wall_no_call_that_takes_another_process_s_pid(name):
    import platform

    numbers = {
        "kcmp": (312, 272),
        "get_robust_list": (274, 100),
        "move_pages": (279, 239),
        "migrate_pages": (256, 238),
    }
    column = {"x86_64": 0, "aarch64": 1}.get(platform.machine())
    if column is None:
        pytest.skip(f"no numbers for {platform.machine()}")
    source = f"import ctypes\ndef strategy(board):\n    ctypes.CDLL(None).syscall({numbers[name][column]}, 1, 0, 0)\n    return 'x'\n"
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert (result.state, result.error) == ("rejected", SECCOMP_ENDED)
