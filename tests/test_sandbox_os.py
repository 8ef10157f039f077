"""The operating-system boundary: one process per game, and each wall on its own, one property per test.

A test of a single wall runs the strategy with ONLY that wall (`SandboxConfig.os_walls=(wall,)`) and
without the Python walls (real builtins, no audit hook: `python_walls=False`), so what it shows is
the kernel's doing. It is skipped, with the machine's reason, where that wall is not available. The
strategy reports what it saw by raising: the message comes back as `GameResult.error`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers.config import SandboxConfig
from helpers.game import GameBoard, spawn_seed
from helpers.sandbox import (
    _play_unchecked,
    execute_strategy,
    get_pool,
    play_batch,
    shutdown_pool,
    walls_in_force,
)
from helpers.sandbox_rules import ALWAYS, OS_WALLS

ROOT = Path(__file__).resolve().parent.parent
FAST = SandboxConfig(call_timeout=0.5, game_timeout=2.0)
LINUX = sys.platform.startswith("linux")


def _strategy(body: str) -> str:
    return "def strategy(board):\n" + textwrap.indent(textwrap.dedent(body), "    ") + "    return 'x'\n"


def _raw(body: str, config: SandboxConfig = FAST):
    """Play `body` with the real builtins and no audit hook, behind the config's OS walls only."""
    return _play_unchecked(_strategy(body), GameBoard(seed=1), config, python_walls=False)


def _only(wall: str) -> SandboxConfig:
    """A config with one OS wall; skips the test where this machine does not have it."""
    config = SandboxConfig(call_timeout=0.5, game_timeout=2.0, os_walls=(wall,))
    walls = walls_in_force(config)
    if wall not in walls:
        pytest.skip(f"{wall} is not available here: {walls.missing.get(wall, 'not reported')}")
    return config


def _said(result) -> str:
    """What the strategy raised: `ValueError: <message>` -> `<message>`."""
    assert result.state == "error", result
    return result.error.partition(": ")[2]


# --- the report -------------------------------------------------------------------------------------


def test_the_walls_in_force_are_named_in_one_line():
    walls = walls_in_force(FAST)
    line = str(walls)
    assert line.startswith("sandbox walls: ") and "\n" not in line
    assert set(ALWAYS) <= set(walls.active)


def test_every_wall_asked_for_is_either_in_force_or_missing_with_a_reason():
    walls = walls_in_force(FAST)
    for wall in OS_WALLS:
        assert (wall in walls) != bool(walls.missing.get(wall)), wall


# --- one wall at a time -------------------------------------------------------------------------------


def test_user_wall_a_game_never_runs_as_root(tmp_path):
    config = _only("user")
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o000)  # only a process with capabilities (root) can read it
    result = _raw("import os\nraise ValueError(str(os.geteuid()))\n", config)
    assert _said(result) != "0"
    result = _raw(f"raise ValueError(open({str(secret)!r}).read())\n", config)
    assert result.state == "error" and "root only" not in result.error


def test_user_wall_a_root_trainer_runs_games_as_the_configured_user():
    if os.geteuid() != 0:
        pytest.skip("the trainer is not root: games run as its own user")
    config = _only("user")
    assert _said(
        _raw("import os\nraise ValueError(f'{os.getuid()} {os.getgid()} {os.getgroups()}')\n", config)
    ) == (f"{config.unprivileged_id} {config.unprivileged_id} []")


def test_seccomp_wall_no_socket():
    result = _raw("import socket\nsocket.socket()\n", _only("seccomp"))
    assert (result.state, result.error) == (
        "rejected",
        "forbidden operation at run time: a system call the sandbox forbids (seccomp)",
    )


def test_seccomp_wall_no_new_process():
    result = _raw("import os\nos.fork()\n", _only("seccomp"))
    assert result.state == "rejected" and "seccomp" in result.error


def test_seccomp_wall_no_signal_to_another_process():
    result = _raw(f"import os\nos.kill({os.getpid()}, 0)\n", _only("seccomp"))
    assert result.state == "rejected" and "seccomp" in result.error


def test_seccomp_wall_no_file_opened():
    result = _raw("open('/etc/hostname').read()\n", _only("seccomp"))
    assert (result.state, result.error) == (
        "error",
        "PermissionError: [Errno 13] Permission denied: '/etc/hostname'",
    )


def test_seccomp_wall_no_signal_handler():
    """A Python signal handler is handed the frame it interrupts with no audit event (red team 11 read the
    game's generator from one): a job installs none, and a timer's signal only ends it."""
    result = _raw("import signal\nsignal.signal(signal.SIGALRM, print)\n", _only("seccomp"))
    assert (result.state, result.error) == ("error", "PermissionError: [Errno 13] Permission denied")


def test_seccomp_wall_no_file_removed(tmp_path):
    target = tmp_path / "keep"
    target.write_text("x")
    result = _raw(f"import os\nos.unlink({str(target)!r})\n", _only("seccomp"))
    assert result.state == "rejected" and target.exists()


def test_netns_wall_no_connection_to_the_trainers_machine():
    config = _only("netns")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = _raw(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.3)\n", config
        )
    assert result.state == "error" and result.error.split(":")[0] in ("OSError", "ConnectionRefusedError")


def test_netns_wall_no_network_interface_but_loopback():
    result = _raw("import socket\nraise ValueError(str(socket.if_nameindex()))\n", _only("netns"))
    assert _said(result) == "[(1, 'lo')]"


def test_pidns_wall_a_game_is_process_1_and_sees_no_other_process():
    config = _only("pidns")
    assert _said(_raw("import os\nraise ValueError(str(os.getpid()))\n", config)) == "1"
    result = _raw(f"import os\nos.kill({os.getpid()}, 0)\n", config)
    assert result.error == "ProcessLookupError: [Errno 3] No such process"


def test_pidns_wall_a_setsid_child_does_not_outlive_its_game():
    config = _only("pidns")
    marker = f"{time.time_ns() % 10**6 + 1000}.25"  # `sleep` takes fractions: a unique command line
    body = f"""\
    import os
    if os.fork() == 0:
        os.setsid()
        os.execv('/bin/sleep', ['sleep', '{marker}'])
    raise ValueError('parent done')
    """
    assert _said(_raw(body, config)) == "parent done"
    time.sleep(0.2)
    survivors = [
        path.parent.name
        for path in Path("/proc").glob("[0-9]*/cmdline")
        if marker.encode() in path.read_bytes().split(b"\0")
    ]
    assert survivors == []


def test_mountns_wall_every_file_system_is_read_only(tmp_path):
    result = _raw(f"open({str(tmp_path / 'written')!r}, 'w')\n", _only("mountns"))
    assert result.error == f"OSError: [Errno 30] Read-only file system: '{tmp_path / 'written'}'"
    assert not (tmp_path / "written").exists()


def test_chroot_wall_a_games_root_is_an_empty_directory():
    assert _said(_raw("import os\nraise ValueError(str(os.listdir('/')))\n", _only("chroot"))) == "[]"


def test_chroot_wall_the_trainers_files_are_out_of_sight():
    result = _raw("open('/etc/hostname')\n", _only("chroot"))
    assert result.error == "FileNotFoundError: [Errno 2] No such file or directory: '/etc/hostname'"


# --- what every game gets ---------------------------------------------------------------------------------


def test_a_game_inherits_no_descriptor_but_its_result_pipe():
    body = """\
    import os
    open_fds = []
    for fd in range(256):
        try:
            os.fstat(fd)
            open_fds.append(fd)
        except OSError:
            pass
    raise ValueError(str(open_fds))
    """
    assert _said(_raw(body, SandboxConfig(os_walls=()))) == "[0, 1, 2, 3]"


def test_a_game_has_an_empty_environment(monkeypatch):
    shutdown_pool()
    monkeypatch.setenv("GPT_OSS_2048_SECRET", "hunter2")
    try:
        assert _said(_raw("import os\nraise ValueError(str(dict(os.environ)))\n")) == "{}"
    finally:
        shutdown_pool()  # the next pool starts without the secret in its parent either


def test_a_games_working_directory_is_empty_and_nameless():
    result = _raw("import os\nos.getcwd()\n", SandboxConfig(os_walls=()))
    assert result.error == "FileNotFoundError: [Errno 2] No such file or directory"


def test_every_game_is_a_new_process():
    body = "import os, time\nraise ValueError(f'{os.getpid()} {time.monotonic_ns()}')\n"
    config = SandboxConfig(os_walls=(), max_workers=1)
    first, second = (_said(_raw(body, config)).split()[0] for _ in range(2))
    assert first != second


def test_shutdown_leaves_no_process_behind():
    pool = get_pool(FAST)
    template = pool.template_pid()
    play_batch(["def strategy(board):\n    while True:\n        pass\n"], seeds=[1], sandbox_config=FAST)
    shutdown_pool()
    time.sleep(0.1)
    assert not Path(f"/proc/{template}").exists() or b"helpers._sandbox_worker" not in _cmdline(template)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


KILLED_TRAINER = """
import os, signal, sys, threading, time
sys.path.insert(0, {root!r})
from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.sandbox import execute_strategy, get_pool
config = SandboxConfig(call_timeout=60, game_timeout=60)
print(get_pool(config).template_pid(), flush=True)
loop = "def strategy(board):\\n    while True:\\n        pass\\n"
threading.Thread(target=execute_strategy, args=(loop, GameBoard(seed=1)), kwargs={{"config": config}}).start()
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not LINUX, reason="processes die with their parent on Linux (PR_SET_PDEATHSIG)")
def test_nothing_outlives_a_trainer_killed_mid_game():
    done = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINER.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    template = int(done.stdout.split()[-1])  # after the line naming the walls
    deadline = time.monotonic() + 3.0
    while Path(f"/proc/{template}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{template}").exists() or b"_sandbox_worker" not in _cmdline(template)
    busy = [path.parent.name for path in Path("/proc").glob("[0-9]*/status") if _is_job(path)]
    assert busy == []


def _is_job(status: Path) -> bool:
    """A process of a sandbox job: the nobody user, spinning (a job of the test above)."""
    try:
        text = status.read_text()
    except OSError:
        return False
    uid = SandboxConfig().unprivileged_id
    return f"Uid:\t{uid}\t" in text and "State:\tR" in text and "python" in text


# --- results bound to their game ----------------------------------------------------------------------

_FORGE = """\
import json, os, struct, sys
frame = sys._getframe()
while 'token' not in frame.f_locals:
    frame = frame.f_back
token = frame.f_locals['token'].hex() if {real_token} else '00' * 16
data = json.dumps({{'token': token, 'end': 'over', 'score': 10**6, 'max_tile': 2048}}).encode()
os.write(3, struct.pack('<I', len(data)) + data)
os._exit(0)
"""


def test_a_result_without_its_games_token_is_not_believed():
    result = _raw(_FORGE.format(real_token=False))
    assert (result.state, result.error) == ("error", "the job's result is not bound to its job")


def test_a_forged_win_with_the_right_token_is_not_a_win():
    result = _raw(_FORGE.format(real_token=True))
    assert (result.state, result.score, result.max_tile) != ("success", 10**6, 2048)
    assert (result.state, result.error) == ("error", "the game stopped before its end")


def test_a_page_without_its_games_token_gives_no_keys():
    body = """\
    import sys
    frame = sys._getframe()
    while 'page' not in frame.f_locals:
        frame = frame.f_back
    page = frame.f_locals['page']
    page[128:132] = bytes([1]) + b'a' + bytes([1]) + b'a'  # two keys logged
    page[8:12] = (4).to_bytes(4, 'little')
    page[80:96] = bytes(16)  # and the token wiped
    raise ValueError('forged')
    """
    result = _raw(body)
    assert (result.keys, result.steps) == ((), 0)


# --- the audit hook ---------------------------------------------------------------------------------------


def test_the_audit_hook_cannot_be_switched_off_from_python():
    # a strategy holding the worker's globals (here through a dunder the static checks would refuse)
    source = _strategy(
        """\
        worker = print.__func__.__globals__
        worker['_DENIED_EXACT'] = frozenset()
        worker['_DENIED_PREFIXES'] = ()
        worker['os']._exit = lambda status: None
        worker['os'].listdir('/')
        """
    )
    result = _play_unchecked(source, GameBoard(seed=1), FAST)
    assert (result.state, result.error) == ("rejected", "forbidden operation at run time: os.listdir")


def test_the_environment_is_empty_even_through_a_format_string():
    source = _strategy("raise ValueError('{0.__func__.__globals__[os].environ}'.format(print))\n")
    result = _play_unchecked(source, GameBoard(seed=1), FAST)
    assert result.error == "ValueError: environ({})"


# --- nothing reaches a later game ------------------------------------------------------------------------

VICTIM = textwrap.dedent(
    """\
    import collections, random
    def strategy(board):
        global room
        try:
            room
        except NameError:
            room = bytearray(200 * 2**20)  # fails if memory was parked by an earlier game
        counts = collections.Counter({'a': 2, 'u': 1, 'i': 1, 'é': 1})
        counts[random.choice('auié')] += 1
        return counts.most_common(1)[0][0]
    """
)
POISONS = [
    # a class the game's own random number generator is made of
    "import random\ndef strategy(board):\n    random.Random.random = lambda self: 0.0\n    return 'x'\n",
    # a shared library class
    "import collections\ndef strategy(board):\n"
    "    collections.Counter.most_common = lambda self, n=None: [('é', 1)]\n    return 'x'\n",
    # memory parked in shared module state
    "import collections\ndef strategy(board):\n    collections.Counter.hoard = bytearray(400 * 2**20)\n    return 'x'\n",
    # a suspended generator whose finally would run during a later garbage collection
    "import collections\ndef strategy(board):\n    def spin():\n        try:\n            yield 1\n"
    "        finally:\n            while True:\n                pass\n"
    "    collections.Counter.spinner = spin()\n    next(collections.Counter.spinner)\n    return 'x'\n",
    # the strategy's own random module
    "import random\ndef strategy(board):\n    random.seed(0)\n    random.choice = lambda seq: 'é'\n    return 'x'\n",
]


def test_a_strategys_side_effects_never_reach_a_later_game():
    # One game after the other, with limits wide enough that a busy machine cannot make the victim's
    # 200 MB allocation or its long game time out: only a poison could change its result.
    config = SandboxConfig(call_timeout=5.0, game_timeout=30.0, max_workers=1)
    alone = play_batch([VICTIM], seeds=[4], sandbox_config=config)[0][0]
    assert alone.state in ("success", "failed", "stalled"), alone
    results = play_batch([*POISONS, VICTIM], seeds=[4], sandbox_config=config)
    assert results[-1][0] == alone


# --- the strategy's randomness --------------------------------------------------------------------------

PREDICTOR = textwrap.dedent(
    """\
    import random
    def strategy(board):
        print(random.random())
        return 'x'
    """
)


def test_the_strategys_random_is_not_the_games_spawn_stream():
    import random

    for seed in (0, 1, 3407):
        printed = float(play_batch([PREDICTOR], seeds=[seed], sandbox_config=FAST)[0][0].output)
        stream = random.Random(spawn_seed(seed))
        assert printed not in [stream.random() for _ in range(10)]


def test_the_strategys_random_is_the_same_for_the_same_game():
    first = play_batch([PREDICTOR], seeds=[5, 6], sandbox_config=FAST)[0]
    again = play_batch([PREDICTOR + "# another source, the same game\n"], seeds=[5, 6], sandbox_config=FAST)[
        0
    ]
    assert [r.output for r in first] == [r.output for r in again]
    assert first[0].output != first[1].output


# --- where the machine refuses namespaces -------------------------------------------------------------

REFUSE_UNSHARE = """
import ctypes, os, platform, struct, sys
sys.path.insert(0, {root!r})
from helpers.sandbox_walls import _ARCHES, _SYSCALLS, _instruction, install_seccomp
column = 0 if platform.machine() in ("x86_64", "amd64") else 1
unshare = _SYSCALLS["unshare"][column]
program = b"".join([
    _instruction(0x20, 0, 0, 0),
    _instruction(0x15, 0, 1, unshare),
    _instruction(0x06, 0, 0, 0x00050000 | 1),  # EPERM, as Docker's default profile answers
    _instruction(0x06, 0, 0, 0x7FFF0000),
])
install_seccomp(program)
from helpers.game import GameBoard
from helpers.sandbox import execute_strategy, walls_in_force
walls = walls_in_force()
print(sorted(walls.missing))
print(execute_strategy("import random\\ndef strategy(board):\\n    return random.choice('aiéu')\\n", GameBoard(seed=1)).state)
"""


@pytest.mark.skipif(not LINUX, reason="namespaces are Linux's")
def test_where_namespaces_are_refused_the_pool_still_plays_and_says_what_is_missing():
    done = subprocess.run(
        [sys.executable, "-c", REFUSE_UNSHARE.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    walls, missing, state = done.stdout.splitlines()
    assert missing == "['mountns', 'netns', 'pidns']"
    assert state in ("success", "failed")
    assert walls.startswith("sandbox walls: ") and "; missing: " in walls


UNPRIVILEGED = """
import sys
sys.path.insert(0, {root!r})
from helpers.game import GameBoard
from helpers.sandbox import _play_unchecked, walls_in_force
from helpers.config import SandboxConfig
walls = walls_in_force()
print(sorted(walls.active))
result = _play_unchecked("def strategy(board):\\n    import os\\n    os.fork()\\n", GameBoard(seed=1), SandboxConfig(), False)
print(result.state)
"""


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to start a trainer as another user")
def test_an_unprivileged_trainer_gets_the_walls_through_a_user_namespace():
    python = "/usr/bin/python3"  # readable by every user, unlike a virtual environment under /root
    if not os.access(python, os.X_OK) or sys.version_info[:2] != (3, 11):
        pytest.skip("needs the system's python3 3.11 next to this one")
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            python,
            "-c",
            UNPRIVILEGED.format(root=str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    if done.returncode != 0 and "No such file" in done.stderr:
        pytest.skip("setpriv is not installed")
    assert done.returncode == 0, done.stderr
    _, active, state = done.stdout.splitlines()
    assert active.startswith("['audit hook'") and "'user'" in active
    assert state == "rejected"


def test_a_job_killed_on_time_is_gone_at_once():
    pool = get_pool(FAST)
    start = time.perf_counter()
    result = execute_strategy(
        "def strategy(board):\n    while True:\n        pass\n", GameBoard(seed=1), config=FAST
    )
    assert result.state == "timeout" and time.perf_counter() - start < FAST.call_timeout + 0.5
    children = Path(f"/proc/{pool.template_pid()}/task/{pool.template_pid()}/children")
    deadline = time.monotonic() + 1.0
    while children.exists() and children.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not children.exists() or children.read_text().split() == []


def test_of_several_training_processes_only_rank_zero_reports_the_walls(monkeypatch, capsys):
    from helpers import sandbox_pool

    walls = sandbox_pool.Walls(active=("seccomp",), missing={}, details={})
    monkeypatch.setattr(sandbox_pool, "_reported", set())
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    sandbox_pool._report(walls)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(sandbox_pool, "_reported", set())
    monkeypatch.setenv("RANK", "0")
    sandbox_pool._report(walls)
    assert capsys.readouterr().out.startswith("sandbox walls: ")
