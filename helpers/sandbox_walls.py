"""The operating-system walls around a sandbox job, put up with the kernel's own interfaces (ctypes).

A template process (`helpers._sandbox_worker`) calls `prepare` once: it enters the namespaces the
machine allows (network and IPC, and a mount namespace where every file system is read-only; through a
user namespace when the trainer is not root), makes an empty directory that no longer exists, and
probes, in a throw-away child, which per-job walls work. Every job process then calls `enter_pid_namespace`
and `seal` with that plan: a PID namespace of its own, the empty directory as its root, an
unprivileged user (or, in a user namespace, no capabilities), no new privileges and a seccomp filter.
A job whose walls fail runs nothing (`WALLS_EXIT`), so the walls reported are the walls every job has.

The seccomp filter is a deny-list, written once for x86-64 and aarch64: any other architecture, and the
x32 and 32-bit system-call tables, are killed outright. Denied with the death of the process: running
programs (`execve`), new processes and threads (`fork`, `clone`), signals to any process (`kill`, ...),
`ptrace` and reading other processes' memory, sockets, changing users, groups or capabilities,
`setsid`/`setpgid`, namespaces and mounts, `chroot`, kernel modules, keyrings, `bpf`, `io_uring`
(which bypasses seccomp), System V IPC and POSIX message queues (which outlive a process), and every
call that changes a file system entry (unlink, rename, mkdir, chmod, truncate, ...). Opening any file
fails with EACCES: a job needs no file once it starts.

Linux only; elsewhere `prepare` reports every wall missing with its reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import struct
import sys
import tempfile
from dataclasses import dataclass, field

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

MS_REC = 0x4000
MS_PRIVATE = 1 << 18
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1

_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_X32_SYSCALL_BIT = 0x40000000

_ARCHES = {"x86_64": 0xC000003E, "amd64": 0xC000003E, "aarch64": 0xC00000B7, "arm64": 0xC00000B7}
"""AUDIT_ARCH_* of the architectures whose system-call numbers are below."""

_SYSCALLS = {  # name: (x86-64, aarch64); None where the architecture has no such call
    "execve": (59, 221),
    "execveat": (322, 281),
    "fork": (57, None),
    "vfork": (58, None),
    "clone": (56, 220),
    "clone3": (435, 435),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "process_madvise": (440, 440),
    "pidfd_open": (434, 434),
    "pidfd_getfd": (438, 438),
    "pidfd_send_signal": (424, 424),
    "kill": (62, 129),
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "socket": (41, 198),
    "socketpair": (53, 199),
    "bind": (49, 200),
    "listen": (50, 201),
    "accept": (43, 202),
    "accept4": (288, 242),
    "connect": (42, 203),
    "setsid": (112, 157),
    "setpgid": (109, 154),
    "setuid": (105, 146),
    "setgid": (106, 144),
    "setreuid": (113, 145),
    "setregid": (114, 143),
    "setresuid": (117, 147),
    "setresgid": (119, 149),
    "setgroups": (116, 159),
    "setfsuid": (122, 151),
    "setfsgid": (123, 152),
    "capset": (126, 91),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "mount_setattr": (442, 442),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "sethostname": (170, 161),
    "setdomainname": (171, 162),
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "adjtimex": (159, 171),
    "clock_adjtime": (305, 266),
    "quotactl": (179, 60),
    "lookup_dcookie": (212, 18),
    "personality": (135, 92),
    "seccomp": (317, 277),
    "syslog": (103, 116),
    "vhangup": (153, 58),
    "iopl": (172, None),
    "ioperm": (173, None),
    "modify_ldt": (154, None),
    "uselib": (134, None),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "unlink": (87, None),
    "unlinkat": (263, 35),
    "rename": (82, None),
    "renameat": (264, 38),
    "renameat2": (316, 276),
    "mkdir": (83, None),
    "mkdirat": (258, 34),
    "rmdir": (84, None),
    "symlink": (88, None),
    "symlinkat": (266, 36),
    "link": (86, None),
    "linkat": (265, 37),
    "chmod": (90, None),
    "fchmod": (91, 52),
    "fchmodat": (268, 53),
    "fchmodat2": (452, 452),
    "chown": (92, None),
    "fchown": (93, 55),
    "lchown": (94, None),
    "fchownat": (260, 54),
    "truncate": (76, 45),
    "ftruncate": (77, 46),
    "mknod": (133, None),
    "mknodat": (259, 33),
    "utime": (132, None),
    "utimes": (235, None),
    "utimensat": (280, 88),
    "futimesat": (261, None),
    "setxattr": (188, 5),
    "lsetxattr": (189, 6),
    "fsetxattr": (190, 7),
    "removexattr": (197, 14),
    "lremovexattr": (198, 15),
    "fremovexattr": (199, 16),
    "fanotify_init": (300, 262),
    "shmget": (29, 194),
    "shmat": (30, 196),
    "shmctl": (31, 195),
    "semget": (64, 190),
    "semop": (65, 193),
    "semctl": (66, 191),
    "semtimedop": (220, 192),
    "msgget": (68, 186),
    "msgsnd": (69, 189),
    "msgrcv": (70, 188),
    "msgctl": (71, 187),
    "mq_open": (240, 180),
    "mq_unlink": (241, 181),
    "mq_timedsend": (242, 182),
    "mq_timedreceive": (243, 183),
    "mq_notify": (244, 184),
    "mq_getsetattr": (245, 185),
    "setpriority": (141, 140),
    "sched_setparam": (142, 118),
    "sched_setscheduler": (144, 119),
    "sched_setattr": (314, 274),
    "sched_setaffinity": (203, 122),
    "ioprio_set": (251, 30),
    "io_setup": (206, 0),  # kernel AIO: one io_setup could take the whole host's fs.aio-max-nr
    "io_destroy": (207, 1),
    "io_submit": (209, 2),
    "io_cancel": (210, 3),
    "io_getevents": (208, 4),
    "io_pgetevents": (333, 292),
    "sync": (162, 81),  # the host's disks written back at a job's will
    "syncfs": (306, 267),
    "kcmp": (312, 272),  # calls that reach another process by its pid (red team 17)
    "get_robust_list": (274, 100),
    "move_pages": (279, 239),
    "migrate_pages": (256, 238),
    "quotactl_fd": (443, 443),  # calls of newer kernels that change files or reach paths (red team 18)
    "setxattrat": (463, 463),
    "removexattrat": (466, 466),
    "open_tree_attr": (467, 467),
    "file_setattr": (469, 469),
    "rt_sigaction": (13, 134),
    "open": (2, None),
    "creat": (85, None),
    "openat": (257, 56),
    "openat2": (437, 437),
}
FAILING_SYSCALLS = ("open", "creat", "openat", "openat2", "rt_sigaction")
"""Calls that fail with EACCES instead of killing the job (the interpreter may try to read a file in
passing, for instance to show a traceback); every other call in `_SYSCALLS` kills it. `rt_sigaction`: a
Python signal handler is handed the frame it interrupts, with no audit event, so a job installs none (`signal.signal`
raises); a timer's signal then only ends the job (red team 11 read the game's generator from such a frame)."""


NEWEST_CALL = 469
"""The newest system call this list was written against (`file_setattr`, Linux 6.17): a job's call of a higher
number, one a newer kernel added, fails with ENOSYS instead of passing unexamined (red team 18 found four
such calls, from 6.13-6.17, changing files where the filter predated them)."""

ARGUMENT_CHECKS = {  # name: (x86-64, aarch64), the argument looked at, its values, whether they are the only allowed
    "fcntl": ((72, 25), 1, (8, 15, 10), False),  # F_SETOWN, F_SETOWN_EX, F_SETSIG: SIGIO to another pid
    "prctl": ((157, 167), 0, (1, 62), False),  # PR_SET_PDEATHSIG (a job outlived its trainer), PR_SCHED_CORE
    "prlimit64": ((302, 261), 0, (0,), True),  # on itself only (pid 0)
}
"""Calls the job may make, except with some arguments (the low 32 bits of the argument are compared): the values
listed end the job, or, marked True, every value but those. Without a PID namespace `fcntl(F_SETOWN, pid)` and
`O_ASYNC` made the kernel send SIGKILL to any process of the job's user, and `prlimit64(pid, ...)` set another
process's limits (red team 17 killed the trainer and other jobs, and left the trainer unable to write a file). A
job that cleared its parent-death signal outlived a trainer killed with SIGKILL, holding its memory (red team
18); `PR_SCHED_CORE` acts on other pids."""


@dataclass
class Plan:
    """The walls each job process puts up, decided once by the template (`prepare`)."""

    pidns: bool = False
    """Enter a PID namespace of its own (a keeper process waits outside it)."""
    root_fd: int | None = None
    """A directory that was deleted once opened: the job's working directory, and its root with `chroot`."""
    chroot: bool = False
    """Make `root_fd` the job's root."""
    user: int | None = None
    """Drop to this user and group id (the trainer runs as root)."""
    drop_capabilities: bool = False
    """Give up every capability (the template is in a user namespace of its own)."""
    seccomp: bytes | None = None
    """The seccomp filter program."""
    active: list[str] = field(default_factory=list)
    """Names of the walls in force (see `helpers.sandbox_rules.OS_WALLS`)."""
    missing: dict[str, str] = field(default_factory=dict)
    """Walls asked for and not in force, with the reason."""
    details: dict[str, str] = field(default_factory=dict)
    """A few words on some walls in force (which user a job runs as)."""


# --- the kernel's interfaces --------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def unshare(flags: int) -> None:
    """unshare(2): `os.unshare` where Python has it (3.12), the C library's otherwise."""
    if hasattr(os, "unshare"):
        os.unshare(flags)
    else:
        _check(_c().unshare(ctypes.c_int(flags)), "unshare")


def prctl(option: int, arg: int = 0) -> None:
    _check(
        _c().prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        ),
        "prctl",
    )


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent ends (Linux; nothing elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            prctl(PR_SET_PDEATHSIG, 9)


def adopt_orphans() -> None:
    """Become the parent of this process's orphaned descendants, to reap them (Linux; nothing elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            prctl(PR_SET_CHILD_SUBREAPER, 1)


def _syscall(number: int, *args: object) -> int:
    return _check(_c().syscall(ctypes.c_long(number), *args), f"system call {number}")


def _number(name: str) -> int:
    column = 0 if platform.machine().lower() in ("x86_64", "amd64") else 1
    number = _SYSCALLS[name][column]
    assert number is not None
    return number


# --- seccomp --------------------------------------------------------------------------------------------


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def seccomp_program(machine: str | None = None) -> bytes:
    """The filter, as BPF instructions: kill other architectures and the denied calls, fail opens."""
    machine = (machine or platform.machine()).lower()
    if machine not in _ARCHES:
        raise OSError(errno.ENOSYS, f"no system-call table for {machine}")
    column = 0 if _ARCHES[machine] == _ARCHES["x86_64"] else 1
    killed = sorted(
        {calls[column] for name, calls in _SYSCALLS.items() if name not in FAILING_SYSCALLS} - {None}
    )
    failing = sorted({_SYSCALLS[name][column] for name in FAILING_SYSCALLS} - {None})
    load_word, jump_eq, jump_ge, ret = 0x20, 0x15, 0x35, 0x06
    head = [
        _instruction(load_word, 0, 0, 4),  # seccomp_data.arch
        _instruction(jump_eq, 1, 0, _ARCHES[machine]),
        _instruction(ret, 0, 0, _SECCOMP_RET_KILL_PROCESS),
        _instruction(load_word, 0, 0, 0),  # seccomp_data.nr
    ]
    if column == 0:  # the x32 table shares the architecture with x86-64
        head.append(_instruction(jump_ge, 0, 1, _X32_SYSCALL_BIT))
        head.append(_instruction(ret, 0, 0, _SECCOMP_RET_KILL_PROCESS))
    head.append(_instruction(jump_ge, 0, 1, NEWEST_CALL + 1))  # a call newer than this list: ENOSYS
    head.append(_instruction(ret, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS))
    for calls, argument, values, only in ARGUMENT_CHECKS.values():  # each block returns, so `nr` stays loaded
        listed, other = (
            (_SECCOMP_RET_ALLOW, _SECCOMP_RET_KILL_PROCESS)
            if only
            else (_SECCOMP_RET_KILL_PROCESS, _SECCOMP_RET_ALLOW)
        )
        head.append(_instruction(jump_eq, 0, len(values) + 3, calls[column]))
        head.append(_instruction(load_word, 0, 0, 16 + 8 * argument))  # seccomp_data.args[argument], low word
        for index, value in enumerate(values):
            head.append(_instruction(jump_eq, len(values) - index, 0, value))  # to the `listed` return
        head.append(_instruction(ret, 0, 0, other))
        head.append(_instruction(ret, 0, 0, listed))
    checks = len(killed) + len(failing)
    body = []
    for index, number in enumerate(killed + failing):
        allow_at = checks - index - 1  # the instructions after this one up to the ALLOW return
        target = allow_at + 1 if index < len(killed) else allow_at + 2
        assert target < 256
        body.append(_instruction(jump_eq, target, 0, number))
    tail = [
        _instruction(ret, 0, 0, _SECCOMP_RET_ALLOW),
        _instruction(ret, 0, 0, _SECCOMP_RET_KILL_PROCESS),
        _instruction(ret, 0, 0, _SECCOMP_RET_ERRNO | errno.EACCES),
    ]
    return b"".join(head + body + tail)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(program: bytes) -> None:
    """No new privileges, then the filter (seccomp(2), or prctl(2) on kernels without it)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    try:
        _syscall(
            _number("seccomp"), ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(0), ctypes.byref(fprog)
        )
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        _check(
            _c().prctl(
                ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), 0, 0
            ),
            "prctl(PR_SET_SECCOMP)",
        )


# --- users and capabilities -------------------------------------------------------------------------


def drop_user(user: int) -> None:
    """Become `user` (and group `user`, no supplementary groups); the kernel clears every capability."""
    os.setgroups([])
    os.setresgid(user, user, user)
    os.setresuid(user, user, user)
    if os.geteuid() != user or os.getegid() != user:
        raise OSError(errno.EPERM, "the user id did not change")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable capability sets."""
    for capability in range(64):
        try:
            prctl(PR_CAPBSET_DROP, capability)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # past the last capability this kernel knows
                break
            raise
    with contextlib.suppress(OSError):
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _syscall(_number("capset"), ctypes.byref(header), ctypes.byref(data))


# --- namespaces, file systems ---------------------------------------------------------------------


def _enter_user_namespace(flags: int) -> None:
    """unshare with a new user namespace, mapping this user and group onto themselves."""
    uid, gid = os.geteuid(), os.getegid()
    unshare(CLONE_NEWUSER | flags)
    for path, text in (
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", f"{uid} {uid} 1"),
        ("/proc/self/gid_map", f"{gid} {gid} 1"),
    ):
        with open(path, "w") as handle:
            handle.write(text)


def _read_only_file_systems() -> None:
    """In a fresh mount namespace: stop propagation to the host, then make every mount read-only."""
    if _c().mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        _check(-1, "mount --make-rprivate /")

    class _MountAttr(ctypes.Structure):
        _fields_ = [
            ("attr_set", ctypes.c_uint64),
            ("attr_clr", ctypes.c_uint64),
            ("propagation", ctypes.c_uint64),
            ("userns_fd", ctypes.c_uint64),
        ]

    attributes = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _syscall(
        _number("mount_setattr"),
        ctypes.c_int(AT_FDCWD),
        b"/",
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attributes),
        ctypes.c_size_t(ctypes.sizeof(attributes)),
    )


def _deleted_directory() -> int:
    """An open, empty directory that no longer has a name: nothing can ever be created in it."""
    path = tempfile.mkdtemp(prefix="gpt-oss-2048-job-")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.rmdir(path)
    return fd


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (text or type(exc).__name__).splitlines()[0][:120]


# --- the template's plan, and each job's walls ------------------------------------------------------


def prepare(requested: tuple[str, ...], user: int) -> Plan:
    """Set up the template (namespaces, the empty directory) and decide what every job will do."""
    plan = Plan()
    if not sys.platform.startswith("linux"):
        plan.missing = {name: f"not Linux ({sys.platform})" for name in requested}
        with contextlib.suppress(OSError):
            plan.root_fd = _deleted_directory()
        return plan
    try:
        plan.root_fd = _deleted_directory()
    except OSError as exc:
        plan.missing["empty working directory"] = _reason(exc)
    root = os.geteuid() == 0
    flags = (CLONE_NEWNET | CLONE_NEWIPC if "netns" in requested else 0) | (
        CLONE_NEWNS if "mountns" in requested else 0
    )
    in_user_namespace = False
    if root:
        for name, flag in (("netns", CLONE_NEWNET | CLONE_NEWIPC), ("mountns", CLONE_NEWNS)):
            if flags & flag:
                try:
                    unshare(flag)
                except OSError as exc:
                    plan.missing[name] = _reason(exc)
    elif {"netns", "mountns", "pidns", "chroot"} & set(requested):
        try:
            _enter_user_namespace(flags)
            in_user_namespace = True
        except OSError as exc:
            reason = f"no user namespace for an unprivileged trainer ({_reason(exc)})"
            plan.missing.update({name: reason for name in ("netns", "mountns") if name in requested})
    if "netns" in requested and "netns" not in plan.missing:
        plan.active.append("netns")
    if "mountns" in requested and "mountns" not in plan.missing:
        try:
            _read_only_file_systems()
            plan.active.append("mountns")
        except OSError as exc:
            plan.missing["mountns"] = f"file systems not made read-only ({_reason(exc)})"
    _probe(plan, requested, root, in_user_namespace, user)
    return plan


def _probe(plan: Plan, requested: tuple[str, ...], root: bool, in_user_namespace: bool, user: int) -> None:
    """Try the per-job walls in a throw-away child, in the order jobs put them up; keep those that work."""
    candidate = Plan(root_fd=plan.root_fd)
    if "pidns" in requested:
        candidate.pidns = True
    if "chroot" in requested and plan.root_fd is not None:
        candidate.chroot = True
    if "user" in requested:
        if root and user <= 0:
            plan.missing["user"] = f"SandboxConfig.unprivileged_id is {user}, which is root"
        elif root:
            candidate.user = user
        elif in_user_namespace:
            candidate.drop_capabilities = True
    if "seccomp" in requested:
        try:
            candidate.seccomp = seccomp_program()
        except OSError as exc:
            plan.missing["seccomp"] = _reason(exc)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the probe: report each wall's fate, then leave
        os.close(read)
        report = {}
        for name, attempt in _attempts(candidate):
            try:
                attempt()
                report[name] = ""
            except BaseException as exc:  # noqa: BLE001 - whatever stops a wall, it is missing
                report[name] = _reason(exc) or "failed"
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    report = json.loads(data or b"{}")
    for name in ("pidns", "chroot", "user", "seccomp"):
        if name not in requested or name in plan.missing:
            continue
        if report.get(name) == "" or (name == "user" and name not in report and not root):
            plan.active.append(name)
        else:
            plan.missing[name] = report.get(name) or "no empty directory to use as the root"
    plan.pidns = "pidns" in plan.active
    plan.chroot = "chroot" in plan.active
    plan.user = candidate.user if "user" in plan.active else None
    plan.drop_capabilities = candidate.drop_capabilities and "user" in plan.active
    plan.seccomp = candidate.seccomp if "seccomp" in plan.active else None
    if plan.user is not None:
        plan.details["user"] = f"uid {user}"
    elif "user" in plan.active:
        extra = ", no capabilities" if plan.drop_capabilities else ""
        plan.details["user"] = f"the trainer's own uid {os.geteuid()}{extra}"


def _attempts(plan: Plan):
    """(wall name, function) in the order a job puts them up."""
    if plan.pidns:

        def pid_namespace() -> None:
            unshare(CLONE_NEWPID)
            child = os.fork()
            if child == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            _, status = os.waitpid(child, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise OSError(errno.EINVAL, "the child was not process 1 of its namespace")

        yield "pidns", pid_namespace
    if plan.chroot:
        yield "chroot", lambda: enter_root(plan)
    if plan.user is not None:
        yield "user", lambda: drop_user(plan.user)
    if plan.drop_capabilities:
        yield "user", drop_capabilities
    if plan.seccomp is not None:
        yield "seccomp", lambda: install_seccomp(plan.seccomp)


def enter_root(plan: Plan) -> None:
    """Make the deleted directory the working directory, and the root when the plan says so."""
    if plan.root_fd is None:
        return
    os.fchdir(plan.root_fd)
    if plan.chroot:
        os.chroot(".")
        os.chdir("/")


def enter_pid_namespace() -> int:
    """unshare a PID namespace and fork: returns the child's pid in the parent, 0 in the child (process 1)."""
    unshare(CLONE_NEWPID)
    return os.fork()


def seal(plan: Plan) -> None:
    """The job's own walls after its root: not dumpable (no core dump, no ptrace by its own user), the
    user (or capabilities), death with its parent (the user change cleared it; seccomp then keeps a job from
    clearing it), then no new privileges and seccomp."""
    if sys.platform.startswith("linux"):
        prctl(PR_SET_DUMPABLE, 0)
    if plan.user is not None:
        drop_user(plan.user)
    if plan.drop_capabilities:
        drop_capabilities()
    elif plan.user is None and sys.platform.startswith("linux") and os.geteuid() == 0:
        with contextlib.suppress(OSError):  # root without the user wall: no capabilities either (red team 18)
            drop_capabilities()
    die_with_parent()
    if plan.seccomp is not None:
        install_seccomp(plan.seccomp)
