"""The project's Jupyter kernel, `gpt-oss-2048`, installed into each clone's own venv.

`python -m helpers.kernel` (setup.sh runs it) writes the kernel spec into the venv,
`.venv/share/jupyter/kernels/gpt-oss-2048`. JupyterLab started from a venv its user owns looks there
before the user-wide folder (jupyter_core's `prefer_environment_over_user`), so each clone's notebooks
run that clone's venv and code. The spec that older set-ups wrote user-wide is removed when it ran
this venv or a venv that is gone, and kept, with a note, when it runs another clone's venv.

The kernel is IPython's with two differences. It reports the same `language_info` on every machine:
JupyterLab copies the kernel's into a notebook's metadata on open, and with the Python patch version
in it, a committed notebook would be marked modified on any other Python. And it runs the clone check
(`checkout`) before the first cell: the check made on import comes too early in this kernel to be seen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import jupyter_data_dir

from helpers.checkout import warn_if_elsewhere

NAME = "gpt-oss-2048"
DISPLAY_NAME = "gpt-oss-2048 (.venv)"
KERNEL_CLASS = "helpers.kernel.Kernel"  # by name: run as `python -m`, this module is __main__


class Kernel(IPythonKernel):
    """IPython's kernel, with a `language_info` that is the same on every machine and the clone check."""

    language_info = {**IPythonKernel.language_info, "version": str(sys.version_info.major)}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shell.events.register("pre_run_cell", self._check_clone)

    def _check_clone(self, info) -> None:
        """Before the first cell: warn in its output when the notebook runs another clone's code."""
        if self.shell is not None:
            self.shell.events.unregister("pre_run_cell", self._check_clone)
        warn_if_elsewhere()


def venv_spec_folder() -> Path:
    """Where this interpreter's venv keeps the kernel spec."""
    return Path(sys.prefix, "share", "jupyter", "kernels", NAME)


def write_spec(folder: Path, env: dict[str, str] | None = None) -> Path:
    """Write the kernel spec (kernel.json and logos) to `folder`, running this interpreter; return kernel.json."""
    if folder.exists():
        shutil.rmtree(folder)
    overrides: dict[str, object] = {"display_name": DISPLAY_NAME}
    if env:
        overrides["env"] = env
    write_kernel_spec(
        folder,
        overrides=overrides,
        extra_arguments=[f"--IPKernelApp.kernel_class={KERNEL_CLASS}"],
        python_arguments=["-Xfrozen_modules=off"],  # what `ipykernel install` does, for the debugger
    )
    return folder / "kernel.json"


def retire_user_spec(user_kernels: Path) -> str | None:
    """Remove the user-wide spec of an older set-up if it ran this venv or a venv that is gone; say what was done."""
    folder = user_kernels / NAME
    try:
        python = Path(json.loads((folder / "kernel.json").read_text(encoding="utf-8"))["argv"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    ours = python.parent.resolve() == Path(sys.executable).parent.resolve()  # a venv's python is a symlink
    if ours or not python.exists():
        shutil.rmtree(folder)
        why = "this venv" if ours else "a venv that is gone"
        return f"removed the user-wide kernel {folder} that older set-ups wrote (it ran {why}, {python})"
    return (
        f"kept the user-wide kernel {folder}: it runs {python}, another clone's venv whose set-up predates "
        "per-clone kernels; this clone's JupyterLab uses its own (re-run setup.sh there to retire it)"
    )


def shadowing_spec() -> Path | None:
    """The spec folder Jupyter, started from this venv, would use for NAME if it is not the venv's own."""
    found = KernelSpecManager().find_kernel_specs().get(NAME)
    if found is None or Path(found).resolve() == venv_spec_folder().resolve():
        return None
    return Path(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.kernel", description="Install the gpt-oss-2048 kernel into this venv."
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a variable the kernel gets"
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    spec = write_spec(venv_spec_folder(), env)
    print(f"Jupyter kernel '{NAME}' installed in this venv: {spec}")
    note = retire_user_spec(Path(jupyter_data_dir(), "kernels"))
    if note:
        print(note)
    other = shadowing_spec()
    if other:
        print(
            f"warning: Jupyter started from this venv would run the kernel '{NAME}' of {other}, found before "
            f"this venv's in its data path (`{sys.prefix}/bin/jupyter --paths`; JUPYTER_PATH="
            f"{os.environ.get('JUPYTER_PATH', '')!r}, JUPYTER_PREFER_ENV_PATH="
            f"{os.environ.get('JUPYTER_PREFER_ENV_PATH', '')!r}). Remove that spec or change those variables."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
