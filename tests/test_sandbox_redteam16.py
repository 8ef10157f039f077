"""Red team 16: no escape and no unearned reward; three hardenings of the operating-system walls.

A job that got past the Python walls could
- attach locks (`flock`, `fcntl(F_OFD_SETLK)`) to its descriptors 0-2, which were the template's one `/dev/null`
  shared by every job: the locks outlived the job, piled up in kernel memory no limit counts, and carried a number
  from one job to a later one. A `/dev/null` of each job's own still shares the inode, where jobs running at once
  see each other's locks (the review's finding); now descriptors 0-2 are pipes of the job's own;
- take the host's whole kernel-AIO quota with one `io_setup` (and force the host's disks to write back with
  `sync`): those calls now end the job;
- create POSIX timers by the tens of thousands (kernel memory outside `RLIMIT_AS`): its `RLIMIT_SIGPENDING` is 0.
(The round's other finding, a completions log that line separators in a completion could break, is in
tests/test_metrics.py.)
"""

from __future__ import annotations

import platform
import resource
import sys

import pytest
from redteam import SECCOMP_ENDED, job_limits, seccomp_only

from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.sandbox import _play_unchecked

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="the operating-system walls are Linux's")

LEAVE_A_LOCK = """
import ctypes, struct
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    lock = ctypes.create_string_buffer(struct.pack('hhqqi4x', 1, 0, 10**12 + 4242, 1, 0))  # a write lock at 4242
    raise RuntimeError(f'set {libc.fcntl(1, 37, lock)}')  # F_OFD_SETLK on descriptor 1
"""

FIND_A_LOCK = """
import ctypes, struct
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    probe = ctypes.create_string_buffer(struct.pack('hhqqi4x', 1, 0, 10**12, 0, 0))  # from 10**12 to the end
    libc.fcntl(1, 5, probe)  # F_GETLK: a lock another open file holds there conflicts with this one
    kind, _, start, _, _ = struct.unpack('hhqqi4x', probe.raw[:32])
    raise RuntimeError(f'found type {kind} at {start - 10**12}')
"""


def test_a_lock_a_job_leaves_on_its_descriptors_ends_with_it():
    config = SandboxConfig(call_timeout=2.0, game_timeout=3.0)
    left = _play_unchecked(LEAVE_A_LOCK, GameBoard(seed=1), config, python_walls=False)
    assert left.error.endswith("set 0"), left.error  # the job could lock its own /dev/null
    found = _play_unchecked(FIND_A_LOCK, GameBoard(seed=1), config, python_walls=False)
    assert "found type 2 at" in found.error, found.error  # F_UNLCK: the later job sees no lock, no note
    assert "4242" not in found.error


HOLD_A_LOCK = """
import ctypes, struct, time
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    lock = ctypes.create_string_buffer(struct.pack('hhqqi4x', 1, 0, 10**12 + 4242, 1, 0))
    made = libc.fcntl(1, 37, lock)  # F_OFD_SETLK on descriptor 1, held while the other job looks
    time.sleep(1.5)
    raise RuntimeError(f'held {made}')
"""

FIND_A_LOCK_WHILE_HELD = FIND_A_LOCK.replace(
    "def strategy(board):\n", "def strategy(board):\n    import time; time.sleep(0.5)\n"
)


def test_jobs_running_at_once_see_no_lock_of_each_other():
    # A /dev/null of each job's own was not enough: locks live on the inode, which every /dev/null shares.
    from helpers.sandbox_pool import Job, get_pool

    config = SandboxConfig(call_timeout=3.0, game_timeout=4.0, max_workers=2)
    holder, finder = get_pool(config).run(
        [
            Job(HOLD_A_LOCK, GameBoard(seed=1), config, python_walls=False),
            Job(FIND_A_LOCK_WHILE_HELD, GameBoard(seed=1), config, python_walls=False),
        ]
    )
    assert holder.error.endswith("held 0"), holder.error
    assert "found type 2 at" in finder.error, finder.error


def test_a_job_reads_nothing_and_writes_nowhere_on_descriptors_0_to_2():
    source = """
import os
def strategy(board):
    read = os.read(0, 10)
    try:
        os.write(2, b"x")
    except OSError as error:
        raise RuntimeError(f'read {read!r} write errno {error.errno}')
    raise RuntimeError('written')
"""
    result = _play_unchecked(source, GameBoard(seed=1), SandboxConfig(call_timeout=2.0), python_walls=False)
    assert result.error.endswith("read b'' write errno 32"), (
        result.error
    )  # EPIPE, and the job lived to say it


NUMBERS = {  # (x86-64, aarch64), from the kernels' tables, apart from helpers.sandbox_walls._SYSCALLS
    "io_setup": (206, 0),
    "io_submit": (209, 2),
    "io_getevents": (208, 4),
    "io_destroy": (207, 1),
    "io_cancel": (210, 3),
    "io_pgetevents": (333, 292),
    "sync": (162, 81),
    "syncfs": (306, 267),
}


def _number(name: str) -> int:
    x86_64, aarch64 = NUMBERS[name]
    number = {"x86_64": x86_64, "aarch64": aarch64}.get(platform.machine())
    if number is None:
        pytest.skip(f"no number for {name} on {platform.machine()}")
    return number


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_seccomp_wall_no_kernel_aio_and_no_writing_back_the_hosts_disks(name):
    args = {"io_setup": "1, ctypes.byref(ctypes.c_ulong(0))", "syncfs": "0"}.get(name, "0, 0, 0")
    source = (
        "import ctypes\ndef strategy(board):\n"
        f"    ctypes.CDLL(None).syscall({_number(name)}, {args})\n    return 'x'\n"
    )
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert (result.state, result.error) == ("rejected", SECCOMP_ENDED)


def test_a_job_cannot_create_posix_timers():
    source = """
import ctypes
def strategy(board):
    libc = ctypes.CDLL(None, use_errno=True)
    timer = ctypes.c_void_p()
    made = libc.timer_create(1, None, ctypes.byref(timer))  # CLOCK_MONOTONIC, a signal at expiry
    raise RuntimeError(f'timer_create {made} errno {ctypes.get_errno()}')
"""
    result = _play_unchecked(source, GameBoard(seed=1), SandboxConfig(call_timeout=2.0), python_walls=False)
    assert result.error.endswith("timer_create -1 errno 11"), result.error  # EAGAIN: over RLIMIT_SIGPENDING


def test_the_jobs_limits_hold_no_pending_signals(monkeypatch):
    asked = job_limits(monkeypatch)
    assert asked[resource.RLIMIT_SIGPENDING] == (0, 0)


def test_the_walls_table_names_the_same_numbers():
    from helpers.sandbox_walls import _SYSCALLS

    assert all(_SYSCALLS[name] == numbers for name, numbers in NUMBERS.items())
