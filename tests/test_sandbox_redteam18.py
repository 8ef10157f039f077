"""Red team 18: no unearned reward, no Python-level escape; three hardenings of the operating-system walls.

With code past the Python walls,
- `setxattrat`, `removexattrat`, `file_setattr` (Linux 6.13-6.17), newer than the seccomp list, changed host files
  where no mount namespace or chroot hid them (as root with seccomp alone, a file made immutable); `open_tree_attr`
  and `quotactl_fd` reached paths. They now end the job, and any call newer than the list (`NEWEST_CALL`) fails
  with ENOSYS, so the next kernel's calls do not pass unexamined;
- a job that cleared its parent-death signal (`prctl(PR_SET_PDEATHSIG, 0)`) outlived a trainer killed with
  SIGKILL, holding its memory. The signal is set before seccomp, which now ends a job that sets it;
- a root trainer without the user wall left its jobs root's capabilities; now they have none.
The seccomp program itself is also checked here by running it, instruction by instruction.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest
from redteam import SECCOMP_ENDED, seccomp_only

from helpers import sandbox_walls as walls
from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.sandbox import _play_unchecked

LINUX = sys.platform.startswith("linux")

KILL, ALLOW = 0x80000000, 0x7FFF0000
ERRNO = 0x00050000
ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def verdict(machine: str, number: int, args: tuple[int, ...] = (0,) * 6, arch: int | None = None) -> int:
    """What the filter returns for a call, by running its BPF program (the four instructions it uses)."""
    program = walls.seccomp_program(machine)
    data = struct.pack("<iIQ6Q", number, ARCH[machine] if arch is None else arch, 0, *(args + (0,) * 6)[:6])
    at = accumulator = 0
    while True:
        code, jt, jf, k = struct.unpack_from("<HBBI", program, 8 * at)
        if code == 0x20:  # load a word of seccomp_data
            accumulator = struct.unpack_from("<I", data, k)[0]
        elif code in (0x15, 0x35):  # jump if equal / if greater or equal
            taken = accumulator == k if code == 0x15 else accumulator >= k
            at += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"an instruction the interpreter does not know: {code:#x}")
        at += 1


NUMBERS = {  # (x86-64, aarch64), from the kernels' tables
    "fcntl": (72, 25),
    "prctl": (157, 167),
    "prlimit64": (302, 261),
    "getpid": (39, 172),
    "kill": (62, 129),
    "openat": (257, 56),
}


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_decides_each_call_as_written(machine):
    column = 0 if machine == "x86_64" else 1

    def call(name: str, *args: int) -> int:
        return verdict(machine, NUMBERS[name][column], args)

    assert verdict(machine, NUMBERS["getpid"][column], arch=0x40000003) == KILL  # another architecture
    assert call("getpid") == ALLOW and call("kill") == KILL and call("openat") == ERRNO | 13  # EACCES
    assert call("fcntl", 3, 3) == ALLOW and call("fcntl", 3, 1) == ALLOW  # F_GETFL, F_GETFD
    assert (
        call("fcntl", 3, 8, 1234) == KILL and call("fcntl", 3, 15) == KILL and call("fcntl", 3, 10, 9) == KILL
    )
    assert call("prlimit64", 0, 7) == ALLOW and call("prlimit64", 1234, 7) == KILL
    assert (
        call("prctl", 1, 0) == KILL and call("prctl", 62) == KILL and call("prctl", 4, 0) == ALLOW
    )  # DUMPABLE
    for name in ("setxattrat", "removexattrat", "file_setattr", "open_tree_attr", "quotactl_fd"):
        assert verdict(machine, walls._SYSCALLS[name][column]) == KILL, name
    assert verdict(machine, walls.NEWEST_CALL + 1) == ERRNO | 38  # ENOSYS
    assert verdict(machine, 0x3FFFFFFF) == ERRNO | 38
    if machine == "x86_64":
        assert verdict(machine, 0x40000000 + 39) == KILL  # the x32 table


def test_the_list_is_no_newer_than_its_newest_call():
    assert max(n for calls in walls._SYSCALLS.values() for n in calls if n is not None) <= walls.NEWEST_CALL
    assert walls._SYSCALLS["file_setattr"] == (469, 469) and walls._SYSCALLS["setxattrat"] == (463, 463)


@pytest.mark.skipif(not LINUX, reason="the walls are Linux's")
def test_a_job_cannot_clear_its_parent_death_signal():
    source = (
        "import ctypes\ndef strategy(board):\n    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)\n    return 'x'\n"
    )
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert (result.state, result.error) == ("rejected", SECCOMP_ENDED)


@pytest.mark.skipif(not LINUX, reason="the walls are Linux's")
def test_a_job_still_has_its_parent_death_signal():
    source = """
import ctypes
def strategy(board):
    signal = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(2, ctypes.byref(signal), 0, 0, 0)  # PR_GET_PDEATHSIG
    raise RuntimeError(f'pdeathsig {signal.value}')
"""
    result = _play_unchecked(source, GameBoard(seed=1), SandboxConfig(call_timeout=2.0), python_walls=False)
    assert result.error.endswith("pdeathsig 9"), result.error


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="a root trainer's jobs")
def test_a_root_trainer_s_job_without_the_user_wall_has_no_capabilities():
    source = """
import ctypes
def strategy(board):
    held = ctypes.CDLL(None).prctl(23, 21, 0, 0, 0)  # PR_CAPBSET_READ CAP_SYS_ADMIN
    raise RuntimeError(f'cap_sys_admin {held}')
"""
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert result.error.endswith("cap_sys_admin 0"), result.error
