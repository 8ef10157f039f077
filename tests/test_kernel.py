"""Each clone's notebooks run that clone's kernel, and opening a notebook changes nothing in it.

The proof with two clones: two copies of the project, each with a venv of its own (the test venv's
packages, plus an editable-style path to the clone's `helpers`), a user-wide `gpt-oss-2048` kernel as
older set-ups wrote it, and `python -m helpers.kernel` (what setup.sh runs) in each. Then, as
JupyterLab started from a clone's venv does, each notebook's kernel is found by the name in its
metadata, started in the notebook's folder, and asked which `helpers` and which venv it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers import kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "gpt_oss_20B_RL_2048_Game.ipynb", *sorted((ROOT / "notebooks").glob("*.ipynb"))]

# Run by a clone's interpreter: start the kernel each notebook names, in its folder, as JupyterLab does.
PROBE = r"""
import json, os, sys
from pathlib import Path
from jupyter_client.manager import start_new_kernel

results = []
for notebook in map(Path, sys.argv[1:]):
    name = json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"]
    env = {**os.environ, "JPY_SESSION_NAME": str(notebook)}
    manager, client = start_new_kernel(kernel_name=name, cwd=str(notebook.parent), env=env, startup_timeout=120)
    try:
        streams = {"stdout": "", "stderr": ""}
        def keep(message):
            if message["msg_type"] == "stream":
                streams[message["content"]["name"]] += message["content"]["text"]
        client.execute_interactive(
            "import helpers.game, sys; print(helpers.__file__); print(sys.prefix)", output_hook=keep, timeout=120
        )
        helpers_file, prefix = streams["stdout"].split()
        results.append({"spec": manager.kernel_spec.resource_dir, "helpers": helpers_file, "prefix": prefix,
                        "stderr": streams["stderr"]})
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
print(json.dumps(results))
"""


def make_clone(folder: Path) -> Path:
    """A clone: the project's helpers, pyproject and notebooks, and a venv whose `helpers` is this clone's."""
    folder.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "helpers", folder / "helpers", ignore=ignore)
    shutil.copytree(ROOT / "notebooks", folder / "notebooks", ignore=ignore)
    for name in ("pyproject.toml", NOTEBOOKS[0].name):
        shutil.copy(ROOT / name, folder / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / ".venv")], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = folder / ".venv" / "lib" / version / "site-packages"
    (site / "clone.pth").write_text(f"{folder}\n")  # the clone's helpers, as the editable install finds it
    (site / "packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # jupyter and ipykernel
    return folder


def python(clone: Path) -> Path:
    return clone / ".venv" / "bin" / "python"


def jupyter_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose home is `home`: no Jupyter variables but `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "JPY_", "XDG_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, "HOME": str(home), **extra}


def install(clone: Path, env: dict[str, str]) -> str:
    """`python -m helpers.kernel` in the clone's venv, as setup.sh runs it; its report."""
    done = subprocess.run(
        [str(python(clone)), "-m", "helpers.kernel"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def kernels_of(clone: Path, notebooks: list[Path], env: dict[str, str]) -> list[dict]:
    """What the kernel of each notebook runs, found from the clone's venv as its JupyterLab finds it."""
    done = subprocess.run(
        [str(python(clone)), "-c", PROBE, *map(str, notebooks)],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def old_user_wide_kernel(home: Path, clone: Path) -> Path:
    """The user-wide spec older set-ups wrote (`ipykernel install --user --name gpt-oss-2048`)."""
    folder = home / ".local" / "share" / "jupyter" / "kernels" / kernel.NAME
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(python(clone)), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": kernel.DISPLAY_NAME, "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return folder


def test_each_clones_notebooks_run_that_clones_kernel(tmp_path):
    a, b = make_clone(tmp_path / "a"), make_clone(tmp_path / "b")
    home = tmp_path / "home"
    old = old_user_wide_kernel(home, a)  # `a` was set up last with an older setup.sh
    env = jupyter_env(home)
    notebooks = [b / NOTEBOOKS[0].name, b / "notebooks" / "play_2048.ipynb"]

    # Before: `b`'s notebook asks for gpt-oss-2048 and gets the user-wide kernel, `a`'s venv and code.
    (seen,) = kernels_of(b, notebooks[1:], env)
    assert Path(seen["prefix"]) == a / ".venv" and Path(seen["helpers"]) == a / "helpers" / "__init__.py"
    assert "CheckoutWarning" in seen["stderr"] and f"belongs to the clone {b}" in seen["stderr"]

    # `b` is set up: its kernel goes into its venv; the user-wide one runs `a`, which exists: kept.
    report = install(b, env)
    assert f"installed in this venv: {b}/.venv/share/jupyter/kernels/{kernel.NAME}" in report
    assert "kept the user-wide kernel" in report and "warning" not in report
    for seen in kernels_of(b, notebooks, env):
        assert Path(seen["spec"]) == b / ".venv" / "share" / "jupyter" / "kernels" / kernel.NAME
        assert Path(seen["helpers"]) == b / "helpers" / "__init__.py" and Path(seen["prefix"]) == b / ".venv"
        assert "CheckoutWarning" not in seen["stderr"], seen["stderr"]

    # `a` is set up again: the user-wide kernel ran its own venv, so it is removed; `a` gets its own.
    report = install(a, env)
    assert "removed the user-wide kernel" in report and not old.exists()
    (seen,) = kernels_of(a, [a / "notebooks" / "evaluate_strategies.ipynb"], env)
    assert Path(seen["helpers"]) == a / "helpers" / "__init__.py" and Path(seen["prefix"]) == a / ".venv"

    # `a`'s kernel, used for a notebook of `b` (picked by hand, say), says so in the first cell.
    (seen,) = kernels_of(a, notebooks[1:], env)
    assert Path(seen["helpers"]) == a / "helpers" / "__init__.py"
    assert "CheckoutWarning" in seen["stderr"] and f"belongs to the clone {b}" in seen["stderr"]


def test_setup_warns_when_the_user_wide_kernel_comes_first(tmp_path):
    a, b = make_clone(tmp_path / "a"), make_clone(tmp_path / "b")
    home = tmp_path / "home"
    old_user_wide_kernel(home, a)
    report = install(b, jupyter_env(home, JUPYTER_PREFER_ENV_PATH="0"))
    assert "warning: Jupyter started from this venv would run the kernel" in report
    assert str(home / ".local" / "share" / "jupyter" / "kernels" / kernel.NAME) in report


def test_a_user_wide_kernel_whose_venv_is_gone_is_removed(tmp_path):
    a = make_clone(tmp_path / "a")
    home = tmp_path / "home"
    gone = old_user_wide_kernel(home, tmp_path / "deleted-clone")
    assert "a venv that is gone" in install(a, jupyter_env(home)) and not gone.exists()


def test_the_spec_runs_this_interpreter_with_the_projects_kernel(tmp_path):
    spec = json.loads(
        kernel.write_spec(tmp_path / kernel.NAME, {"TORCH_CUDA_ARCH_LIST": "12.1a"}).read_text()
    )
    assert (
        spec["argv"][0] == sys.executable
        and "--IPKernelApp.kernel_class=helpers.kernel.Kernel" in spec["argv"]
    )
    assert spec["display_name"] == kernel.DISPLAY_NAME and spec["language"] == "python"
    assert spec["env"] == {"TORCH_CUDA_ARCH_LIST": "12.1a"}
    assert kernel.Kernel.language_info["version"] == str(sys.version_info.major)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_each_notebook_holds_what_jupyterlab_writes_on_open(path):
    # JupyterLab sets `kernelspec` from the spec and `language_info` from the kernel's reply on open;
    # when they differ from the committed ones the notebook is marked modified (tests/test_browser.py).
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata["kernelspec"] == {
        "name": kernel.NAME,
        "display_name": kernel.DISPLAY_NAME,
        "language": "python",
    }
    assert metadata["language_info"] == kernel.Kernel.language_info


def test_the_pre_commit_hook_keeps_that_metadata(tmp_path):
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    strip = next(hook for hook in hooks if hook["id"] == "strip-notebook-outputs")
    notebook = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], notebook)
    done = subprocess.run(
        [*strip["entry"].split(), str(notebook)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert notebook.read_text(encoding="utf-8") == NOTEBOOKS[0].read_text(encoding="utf-8")


def test_the_warning_tells_the_kernel_to_pick():
    from helpers.checkout import mismatch

    reason = mismatch(ROOT, helpers_home=Path("/elsewhere"), prefix=sys.prefix)
    assert reason is not None and kernel.DISPLAY_NAME in reason
