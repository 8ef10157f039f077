"""Red team 15: no escape and no unearned reward; two hardenings of the operating-system walls.

A job that got past the Python walls could still change its own scheduling: seccomp let `setpriority`,
`sched_setscheduler` and their kin through, and the job kept whatever real-time priority the trainer's host
grants (`RLIMIT_RTPRIO`), enough on some hosts to starve the trainer of a core. Now those calls end the job
and its real-time and nice limits are 0. (The round's other finding, a completions log that a lone surrogate
could fail, is in tests/test_metrics.py.)
"""

from __future__ import annotations

import resource
import sys

import pytest
from redteam import SECCOMP_ENDED, job_limits, seccomp_only

from helpers.game import GameBoard
from helpers.sandbox import _play_unchecked

LINUX = sys.platform.startswith("linux")


@pytest.mark.parametrize(
    "call",
    [
        "os.setpriority(os.PRIO_PROCESS, 0, 19)",  # a lower priority, which any process may take
        "os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))",
        "os.sched_setparam(0, os.sched_param(0))",
        "os.sched_setaffinity(0, os.sched_getaffinity(0))",
    ],
    ids=["setpriority", "sched_setscheduler", "sched_setparam", "sched_setaffinity"],
)
def test_seccomp_wall_no_change_to_the_jobs_scheduling(call):
    source = f"import os\ndef strategy(board):\n    {call}\n    return 'x'\n"
    result = _play_unchecked(source, GameBoard(seed=1), seccomp_only(), python_walls=False)
    assert (result.state, result.error) == ("rejected", SECCOMP_ENDED)


def test_a_job_has_no_real_time_or_higher_priority_whatever_the_host_grants(monkeypatch):
    # This machine grants neither (both limits are 0 here, and raising them needs CAP_SYS_RESOURCE), so the
    # job's own limits are read from what `_set_limits` asks of the kernel.
    asked = job_limits(monkeypatch)
    assert asked[resource.RLIMIT_RTPRIO] == (0, 0)
    assert asked[resource.RLIMIT_NICE] == (0, 0)
    assert asked[resource.RLIMIT_NPROC] == (0, 0) and asked[resource.RLIMIT_AS] == (256 << 20, 256 << 20)
