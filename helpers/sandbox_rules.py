"""The rules both sides of the sandbox share: what a strategy may name, see and do, and how they talk.

The trainer's static checks (`helpers.sandbox_checks`) and the worker's run-time walls
(`helpers._sandbox_worker`) read the same lists from here, so a rule is written once. Standard
library only: the worker imports this module into every job process.
"""

from __future__ import annotations

FORBIDDEN_BUILTINS = frozenset(
    (  # noqa: SIM905 - a word list reads better than a column
        "eval exec compile open __import__ globals locals vars getattr setattr delattr breakpoint input "
        "memoryview type exit quit help"
    ).split()
)
"""Builtins a strategy may not name (where the name is not its own variable)."""

STRING_DRIVEN_MEMBERS = frozenset(
    (  # noqa: SIM905 - a word list reads better than a column
        "attrgetter methodcaller get_type_hints ForwardRef evaluate_forward_ref update_wrapper wraps "
        "singledispatch singledispatchmethod dispatch_table format_map cached_property"
    ).split()
)
"""Members of allowed modules that turn strings into attribute access or code, or call what a shared
registry holds: `operator.attrgetter`, `functools.update_wrapper`/`wraps` (copy attributes named by
strings), `functools.singledispatch` (evaluates string annotations through `typing.get_type_hints`),
`copy.dispatch_table` (the reduce protocol calls what it holds), `str.format_map`,
`functools.cached_property` (its `attrname`, a plain attribute, names the entry of any instance's `__dict__`
it reads and writes: red team 7 read `type` out of `typing.CT_co` with it). Static checks refuse
them by name and the worker leaves them out of the modules it hands out."""

FORBIDDEN_ATTRIBUTES = STRING_DRIVEN_MEMBERS | frozenset(
    (  # noqa: SIM905 - a word list reads better than a column
        "gi_frame gi_code gi_yieldfrom gi_suspended cr_frame cr_code cr_await cr_origin ag_frame ag_code "
        "ag_await f_back f_globals f_locals f_builtins f_code f_trace f_lasti f_lineno tb_frame tb_next "
        "tb_lasti co_code co_consts co_names mro sys os subprocess builtins importlib ctypes gc signal "
        "types inspect socket shutil threading multiprocessing marshal pickle resource mmap pathlib "
        "tempfile posix obj"
    ).split()
)
"""Attribute names that reach frames, code, string-driven attribute access or dangerous modules; `obj` is
the object an `AttributeError` failed on (red team 8 had `type` from `typing.Type.x`, which forwards to it)."""

SAFE_BUILTINS = (  # noqa: SIM905 - a word list reads better than a column
    "abs all any ascii bin bool bytearray bytes callable chr classmethod complex dict divmod "
    "enumerate filter float format frozenset hasattr hash hex id int isinstance issubclass iter len "
    "list map max min next object oct ord pow property range repr reversed round set slice sorted "
    "staticmethod str sum super tuple zip ArithmeticError AssertionError AttributeError "
    "BaseException Exception IndexError KeyError LookupError MemoryError NameError NotImplementedError "
    "OverflowError RecursionError RuntimeError StopIteration TypeError UnboundLocalError ValueError "
    "ZeroDivisionError NotImplemented Ellipsis __build_class__"
).split()
"""Builtins a strategy may use; everything else (open, eval, getattr, type, ...) is simply absent."""

DENIED_EVENTS = (
    "open",
    "import",
    "os.",
    "subprocess.",
    "ctypes.",
    "socket.",
    "shutil.",
    "resource.",
    "signal.",
    "mmap.",
    "gc.",
    "object.__getattr__",
    "object.__delattr__",
    "code.__new__",
    "function.__new__",
    "marshal.",
    "pickle.",
    "builtins.input",
    "builtins.breakpoint",
    "cpython.",
    "_thread.",
    "sys.settrace",
    "sys._getframe",
    "sys._getframemodulename",
    "sys.setprofile",
    "sys.addaudithook",
    "sys._current_frames",
    "sys._current_exceptions",
    "sys.monitoring",
    "sys.setrecursionlimit",
    "syslog.",
    "fcntl.",
    "tempfile.",
    "glob.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "winreg.",
    "msvcrt.",
    "pdb.",
    "sqlite3.",
    "ssl.",
    "select.",
)
"""Audit events (exact names, or prefixes ending in a dot) that end a job while its strategy runs.

Not denied, because the allowed modules raise them in normal use: `compile` and `exec`
(`collections.namedtuple`), `object.__setattr__` (namedtuple, typing), `builtins.id`. `sys._getframe`
is denied: in a job it is replaced by one that gives no frame (`_sandbox_worker._seal_job`), so
only the real one, reached around the walls, raises the event.
"""

# --- the page a job shares with the trainer -------------------------------------------------------

SHM_BYTES = 1 << 20
"""Size of the page shared with the parent: a header, then the log of keys played."""
CALL_START = 0
"""Offset of the f64 monotonic time at which the running call started (0.0 between calls)."""
LOG_LENGTH = 8
"""Offset of the u32 count of bytes used in the key log."""
EVENT = 12
"""Offset of the NUL-padded name of the audit event that ended the job."""
EVENT_BYTES = 64
"""Room for that name."""
TOKEN = 80
"""Offset of the job's token, written by the job process: the parent reads no log without it."""
TOKEN_BYTES = 16
"""Length of a job token."""
LOG_START = 128
"""Offset where the key log starts: entries of one length byte and that many UTF-8 bytes."""
NOT_A_KEY = 255
"""Length byte of an entry that stands for a return value that is not a usable string."""
MAX_KEY_CHARS = 16
"""A stripped string longer than this is no key of any key map, and is logged as NOT_A_KEY."""
MAX_MESSAGE_BYTES = 1 << 26
"""Largest job a worker accepts."""

# --- how a job process ends -----------------------------------------------------------------------

AUDIT_EXIT = 86
"""Exit status of a job that the audit hook ended."""
WALLS_EXIT = 87
"""Exit status of a job process that could not put up the walls its template promised (it ran nothing)."""
SIGNAL_EXIT = 128
"""A job's keeper process (see PID namespaces) exits with this plus the signal that killed the job."""

# --- the operating-system walls ---------------------------------------------------------------------

OS_WALLS = ("user", "seccomp", "netns", "pidns", "mountns", "chroot")
"""Walls a template tries to put up, each where the machine allows it (`SandboxConfig.os_walls`):
`user` drops a job to an unprivileged user and group when the trainer runs as root (and takes every
capability away inside a user namespace); `seccomp` installs a system-call filter; `netns` gives the
jobs a network namespace with no interface; `pidns` gives each job a PID namespace of its own, so that
nothing it starts outlives it; `mountns` makes every file system read-only in a mount namespace;
`chroot` roots each job in an empty directory that no longer exists."""
ALWAYS = ("process per job", "empty environment", "no inherited descriptors", "resource limits", "audit hook")
"""What every job gets, on any machine."""

# --- text that came from a strategy -----------------------------------------------------------------


def printable(text: str, *, keep: str = "") -> str:
    """`text` with every control, format and surrogate character removed and other spaces made plain.

    A strategy's messages and output reach logs, notebook tables and terminals: terminal escape codes,
    bidirectional overrides, zero-width characters and lone surrogates (which cannot even be encoded)
    never get there. Characters in `keep` (say "\\n\\t" for printed output) stay.
    """
    if text.isprintable():
        return text
    kept = []
    for char in text:
        if char.isprintable() or char in keep:
            kept.append(char)
        elif char.isspace():
            kept.append(" ")
    return "".join(kept)
