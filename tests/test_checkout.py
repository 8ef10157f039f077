"""The clone check: a notebook is told when its `helpers` or its interpreter is another clone's."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from helpers import checkout

ROOT = Path(__file__).resolve().parents[1]


def make_clone(folder: Path, project: str = checkout.PROJECT) -> Path:
    """The files that make a folder a clone of a project: helpers/__init__.py and a pyproject naming it."""
    (folder / "helpers").mkdir(parents=True)
    (folder / "helpers" / "__init__.py").write_text("")
    (folder / "notebooks").mkdir()
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{project}"\n')
    return folder


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path]:
    return make_clone(tmp_path / "a"), make_clone(tmp_path / "b")


def test_the_clone_of_a_folder_is_the_nearest_one_above_it(clones, tmp_path):
    a, _ = clones
    assert checkout.clone_of(a / "notebooks") == a
    assert checkout.clone_of(a) == a
    assert checkout.clone_of(tmp_path) is None
    # a folder with a helpers package of another project is not a clone of this one
    assert checkout.clone_of(make_clone(tmp_path / "other", project="something-else")) is None


@pytest.mark.parametrize(
    ("helpers_in", "venv_in", "expected"),
    [
        ("a", "a", None),  # the clone's own code and venv: nothing to say
        ("b", "a", ["`helpers` is imported from", "/b"]),  # another clone's editable helpers
        ("a", "b", ["the interpreter is the venv", "/b/.venv"]),  # another clone's venv (its kernel)
        ("b", "b", ["`helpers` is imported from", "the interpreter is the venv"]),  # both
        ("a", "elsewhere", None),  # a venv outside any clone (VENV=/opt/venv, a system Python)
    ],
)
def test_the_check_names_what_comes_from_another_clone(clones, tmp_path, helpers_in, venv_in, expected):
    a, _ = clones
    helpers_home = tmp_path / helpers_in
    prefix = tmp_path / venv_in / ".venv"
    reason = checkout.mismatch(a / "notebooks", helpers_home=helpers_home, prefix=str(prefix))
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and f"belongs to the clone {a}" in reason
        assert all(part in reason for part in expected), reason
        assert f"{a}/setup.sh" in reason and f"{a}/.venv/bin/jupyter lab" in reason


def test_helpers_installed_outside_any_clone_is_not_the_one_beside_the_notebook(clones, tmp_path):
    a, _ = clones
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    reason = checkout.mismatch(a, helpers_home=site, prefix=str(tmp_path / "venv"))
    assert reason is not None and str(site) in reason


def test_a_notebook_outside_any_clone_is_not_checked(clones, tmp_path):
    _, b = clones
    assert checkout.mismatch(tmp_path, helpers_home=b, prefix=str(b / ".venv")) is None


def test_a_folder_that_is_gone_is_not_an_error(tmp_path):
    assert checkout.mismatch(tmp_path / "gone", helpers_home=tmp_path, prefix=str(tmp_path)) is None


def test_the_notebook_folder_is_jupyterlabs_session_path_else_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert checkout.notebook_folder() == tmp_path
    monkeypatch.setenv("JPY_SESSION_NAME", "/somewhere/notebooks/play_2048.ipynb")
    assert checkout.notebook_folder() == Path("/somewhere/notebooks")  # survives a chdir in a cell
    monkeypatch.setenv("JPY_SESSION_NAME", "a-session-id")  # not a path: the working directory
    assert checkout.notebook_folder() == tmp_path


def test_the_warning_is_a_checkout_warning_and_silent_when_all_is_well(clones):
    a, _ = clones
    # The `helpers` these tests import is the repository's: another clone's, seen from `a`.
    with pytest.warns(checkout.CheckoutWarning, match="another clone's code"):
        assert checkout.warn_if_elsewhere(a / "notebooks")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkout.warn_if_elsewhere(ROOT / "notebooks") is None


def test_outside_ipython_there_is_no_shell():
    assert not checkout.in_ipython()
