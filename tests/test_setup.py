"""The install path: setup.sh's errors and idempotence, and CI running the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"


def run_setup(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, str(ROOT / "setup.sh"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\$ (.+)$", readme, flags=re.M)
    assert "./setup.sh --cpu && .venv/bin/pytest --all" in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "OMP_NUM_THREADS=1" in ci


def test_unknown_option_is_refused_with_a_pointer_to_help():
    result = run_setup("--frobnicate")
    assert result.returncode != 0
    assert "unknown option '--frobnicate'" in result.stderr and "--help" in result.stderr


def test_help_lists_the_options():
    result = run_setup("--help")
    assert result.returncode == 0
    for option in ("--cpu", "--gpu", "--system-torch", "--no-kernel"):
        assert option in result.stdout


def test_gpu_without_a_driver_fails_clearly(tmp_path):
    # A PATH without nvidia-smi (but with bash, uname, python, uv) is a machine without a CUDA driver.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("uname", "sha256sum", "cut", "cat", "head", "sed", "dirname", "uv"):
        found = subprocess.run(
            ["bash", "-c", f"command -v {tool}"], capture_output=True, text=True
        ).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    result = run_setup("--gpu", env={"PATH": str(bin_dir), "PYTHON": sys.executable})
    assert result.returncode != 0
    assert "no CUDA driver" in result.stderr and "--cpu" in result.stderr


def test_a_python_older_than_3_11_is_refused(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text('#!/bin/sh\ncase "$2" in *print*) echo 3.10 ;; *) exit 1 ;; esac\n')
    fake.chmod(0o755)
    result = run_setup("--cpu", env={"PYTHON": str(fake)})
    assert result.returncode != 0
    assert "needs Python >= 3.11" in result.stderr


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="checks the project's own .venv; this interpreter is not it",
)
def test_a_second_setup_run_changes_nothing():
    venv = ROOT / ".venv"
    first = run_setup("--cpu")  # brings a venv made from an older checkout up to date (a no-op in CI)
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in (venv / "lib").glob("python*/site-packages/*"))
    result = run_setup("--cpu")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    after = sorted(p.name for p in (venv / "lib").glob("python*/site-packages/*"))
    assert before == after


def test_the_image_installs_through_setup_sh_on_a_cuda_13_ngc_base():
    dockerfile = (ROOT / "Dockerfile").read_text()
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert any("./setup.sh --gpu --system-torch" in line for line in runs)
    assert not any(re.search(r"pip install[^|&]*\btorch\b", line) for line in runs), (
        "the image's torch is never replaced"
    )
    year, month = map(int, re.search(r"nvcr\.io/nvidia/pytorch:(\d+)\.(\d+)-py3", dockerfile).groups())
    assert (year, month) >= (25, 11), "25.09 did not see the GB10; CUDA 13 images start at 25.11"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and "outputs/" in ignored


def test_the_files_the_image_copies_before_setup_are_enough_for_it(tmp_path):
    """The install layer sees only what is copied before `RUN ./setup.sh`: helpers must import from it."""
    dockerfile = (ROOT / "Dockerfile").read_text().split("RUN ./setup.sh")[0]
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, target = line.split()[1:]
            for source in sources:
                destination = (
                    tmp_path / target / Path(source).name if target.endswith("/") else tmp_path / target
                )
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_file():
                    shutil.copy(ROOT / source, destination)
    # -S: no .pth files, so no editable finder reaching into this checkout; the packages stay importable.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    for command in (["-c", "import helpers; print(helpers.__file__)"], ["-m", "helpers.kernel", "--help"]):
        done = subprocess.run(
            [sys.executable, "-S", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert command[0] == "-m" or done.stdout.strip() == str(tmp_path / "helpers" / "__init__.py")
