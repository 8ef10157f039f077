"""Which clone of the project is running: warn when a notebook runs another clone's code or venv.

`helpers` is installed in editable mode, so an interpreter runs the code of the clone whose `.venv` it
is, whatever folder the notebook sits in. `setup.sh` gives each clone a kernel of its own
(`helpers.kernel`); this check catches what is left: an old user-wide kernel, a kernel picked by
hand, `JUPYTER_PREFER_ENV_PATH=0`. It reads a few files and warns; it changes nothing.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

PROJECT = "gpt-oss-2048-rl"
HELPERS_HOME = Path(__file__).resolve().parent.parent  # the folder the imported `helpers` comes from


class CheckoutWarning(UserWarning):
    """The `helpers` package or the interpreter in use belongs to another clone of the project."""


def clone_of(path: Path) -> Path | None:
    """The clone of this project that holds `path` (a folder with `helpers/` and a pyproject naming it), or None."""
    for folder in (path, *path.parents):
        if (folder / "helpers" / "__init__.py").is_file():
            try:
                if f'name = "{PROJECT}"' in (folder / "pyproject.toml").read_text(encoding="utf-8"):
                    return folder
            except OSError:
                pass
    return None


def notebook_folder() -> Path:
    """The running notebook's folder: JupyterLab's `JPY_SESSION_NAME` when set, else the working directory."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    return Path(session).parent if os.path.isabs(session) else Path.cwd()


def mismatch(
    here: Path | None = None, helpers_home: Path = HELPERS_HOME, prefix: str = sys.prefix
) -> str | None:
    """Why the code running here is not the clone around `here`: None when it is, or when `here` is in no clone.

    Args:
        here: a folder, by default the running notebook's.
        helpers_home: the folder holding the `helpers` package in use.
        prefix: the interpreter's `sys.prefix` (its venv).

    Returns:
        One sentence naming the clone, what came from elsewhere, and how to fix it; or None.
    """
    try:
        beside = clone_of((here or notebook_folder()).resolve())
        if beside is None:
            return None
        wrong = []
        if helpers_home.resolve() != beside:
            wrong.append(f"`helpers` is imported from {helpers_home}")
        venv_clone = clone_of(Path(prefix).resolve())
        if venv_clone is not None and venv_clone != beside:
            wrong.append(f"the interpreter is the venv {prefix} of the clone {venv_clone}")
    except OSError:  # a folder that vanished or cannot be read: nothing to say
        return None
    if not wrong:
        return None
    return (
        f"This notebook belongs to the clone {beside}, but {' and '.join(wrong)}: you are running another "
        f"clone's code. Run {beside}/setup.sh, start JupyterLab with {beside}/.venv/bin/jupyter lab and pick "
        "the kernel gpt-oss-2048 (.venv)."
    )


def warn_if_elsewhere(here: Path | None = None) -> str | None:
    """Warn (CheckoutWarning) when `mismatch` finds another clone's code or venv; return its sentence."""
    reason = mismatch(here)
    if reason:
        warnings.warn(reason, CheckoutWarning, stacklevel=2)
    return reason


def in_ipython() -> bool:
    """Whether an IPython shell (a notebook kernel, the IPython prompt) is running in this process."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None
