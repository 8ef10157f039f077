"""What a person sees: JupyterLab in a real Chromium runs `play_2048.ipynb`, and the board answers.

The test starts JupyterLab headless on 127.0.0.1 with a token, in a temporary folder holding a copy of
the notebook (so nothing is ever saved into the repository), drives Debian's `/usr/bin/chromium` with
Playwright (its own browser download is not used) and runs all cells. Then, as a person would, it
clicks a button whose move changes the board, types a key that is not in the key map (nothing is
played, the game goes on) and one that is, checking the moves against the game's own slide rule;
checks that each watch cell shows the board it drives; presses ▶ there and waits for the watched
strategy to play on its own; presses *To the end* and waits for the game to end; presses ▶ again and
reads why nothing moves; starts a new game, picks the wasd key map and plays a w/s/a/d key; saves, and
finds the `.py` mirror unchanged. The screenshot goes to `outputs/browser/play_2048.png`.

A second test opens each of the four notebooks, runs nothing, and finds it unmodified once the kernel
has answered: the metadata JupyterLab writes on open (`kernelspec`, `language_info`) is committed, so
autosave has nothing to write. A copy without `language_info` is opened too, and is marked modified.
The kernel is the project's own (`helpers.kernel`), as `setup.sh` installs it.

Needs Debian's `chromium` (installed by this test's set-up with apt-get when it runs as root, as in CI)
and the `playwright` package from the dev extras (no `playwright install`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import kernel
from helpers.config import GameConfig
from helpers.game import DIRECTIONS, keys_by_direction, slide

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "play_2048.ipynb"
MIRROR = NOTEBOOK.with_suffix(".py")
NOTEBOOKS = [ROOT / "gpt_oss_20B_RL_2048_Game.ipynb", *sorted((ROOT / "notebooks").glob("*.ipynb"))]
SCREENSHOT = ROOT / "outputs" / "browser" / "play_2048.png"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "board-test-token"
ARROWS = {"up": "↑", "down": "↓", "left": "←", "right": "→"}

pytestmark = pytest.mark.browser


def _install_chromium() -> str:
    """Install Debian's chromium when it is missing and we may (root with apt-get); '' or why not."""
    if Path(CHROMIUM).exists():
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "Chromium is absent and this is not a root Debian machine: apt-get install -y chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return ""


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    """Chromium at CHROMIUM, installed here if need be, so a fresh CI machine runs this test too."""
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    assert Path(CHROMIUM).exists(), f"apt-get installed chromium, but {CHROMIUM} is missing"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """A headless JupyterLab serving copies of the four notebooks and their mirrors in tmp_path/work; yields its URL."""
    work = tmp_path / "work"
    work.mkdir()
    for notebook in NOTEBOOKS:
        shutil.copy(notebook, work / notebook.name)
        shutil.copy(notebook.with_suffix(".py"), work / notebook.with_suffix(".py").name)
    # The project's kernel as setup.sh installs it, running this interpreter, in a folder of the test's
    # own, so that the test never depends on, or touches, the user's Jupyter folders.
    kernel.write_spec(tmp_path / "jupyter-path" / "kernels" / kernel.NAME)
    # Every cell in the page, not only those scrolled into view: the test reads outputs far down.
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = {
        **os.environ,
        "JUPYTER_PATH": str(tmp_path / "jupyter-path"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    port = _free_port()
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


NOTEBOOK_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  return panel.content.widgets.every(c => c.model.type !== 'code' || c.model.executionCount !== null);
}"""


def _read_board(view) -> list[list[int]]:
    """The board's rows as numbers, read from the HTML table of one view of the widget."""
    rows = view.locator(".widget-html-content table tr")
    board = []
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        board.append([int(text) if text.strip() else 0 for text in cells])
    return board


def _moves(page) -> int:
    text = page.locator(".widget-html-content", has_text="moves").first.inner_text()
    return int(text.split("moves")[1].split("·")[0])


def _wait_for_moves(page, count: int) -> None:
    """Wait until the board's status line shows at least `count` moves."""
    page.wait_for_function(
        "count => { const m = document.body.innerText.match(/moves (\\d+)/); return m && Number(m[1]) >= count; }",
        arg=count,
        polling=100,
    )


def _wait_for_text(view, text: str) -> None:
    """Wait until a view of the board shows `text` (a status message, a button's label)."""
    view.get_by_text(text).first.wait_for()


def _changing_direction(board: list[list[int]]) -> str:
    """A direction whose slide changes this board."""
    for direction in DIRECTIONS:
        if slide(board, direction)[2]:
            return direction
    raise AssertionError(f"no move changes the board {board}")


def _assert_moved(before: list[list[int]], after: list[list[int]], direction: str) -> None:
    """After a move, the board is the slid board plus exactly one spawned 2 or 4."""
    slid = slide(before, direction)[0]
    differences = [
        (a, b)
        for row_a, row_b in zip(slid, after, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
        if a != b
    ]
    assert len(differences) == 1 and differences[0][0] == 0 and differences[0][1] in (2, 4), (before, after)


def _run_all(page, url: str) -> None:
    """Open the notebook, run every cell and wait until the kernel is idle with all cells run."""
    page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={TOKEN}")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.isReady"
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(".widget-html-content table")
    page.wait_for_function(NOTEBOOK_IDLE, polling=250)


def test_play_watch_and_pick_keys_in_chromium(jupyterlab: str, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # a missing driver is a broken set-up, not a reason to skip
        raise AssertionError(
            "the browser test needs `pip install playwright` (no browser download)"
        ) from error

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.set_default_timeout(90_000)
            _run_all(page, jupyterlab)

            # One view of the board where it is made, and one in each watch cell, right below it.
            views = page.locator(".jp-OutputArea-output", has=page.locator(".widget-html-content table"))
            assert views.count() == 3
            for call in ("board.watch(BASELINES", "board.watch(generated"):
                cell = page.locator(".jp-CodeCell", has_text=call)
                assert cell.locator(".widget-html-content table").count() == 1, call
            hand, watched = views.first, views.last

            board = _read_board(hand)
            assert len(board) == 6 and all(len(row) == 6 for row in board)
            moves = _moves(page)
            keys = keys_by_direction(GameConfig().keymap)

            direction = _changing_direction(board)
            hand.locator("button.widget-button", has_text=f"{keys[direction]} {ARROWS[direction]}").click()
            _wait_for_moves(page, moves + 1)
            clicked = _read_board(hand)
            _assert_moved(board, clicked, direction)

            # A key that is not in the key map is not played, and the game goes on.
            hand.get_by_role("textbox", name="Keys").type("x")
            _wait_for_text(hand, "'x' is not a key here")
            assert _read_board(hand) == clicked and _moves(page) == moves + 1
            assert "ongoing" in hand.locator(".widget-html-content", has_text="moves").inner_text()

            typed_direction = _changing_direction(clicked)
            hand.get_by_role("textbox", name="Keys").type(keys[typed_direction])
            _wait_for_moves(page, moves + 2)
            _assert_moved(clicked, _read_board(hand), typed_direction)
            assert _read_board(watched) == _read_board(hand)  # two views, one board

            # ▶ makes the watched strategy play: the browser's timer ticks, the kernel moves.
            watched.locator(".widget-play button").first.click()
            _wait_for_moves(page, moves + 2 + 5)

            # To the end finishes the game at once; ▶ then says why nothing moves.
            watched.locator("button.widget-button", has_text="To the end").click()
            _wait_for_text(watched, "game over")
            status = watched.locator(".widget-html-content", has_text="moves").inner_text()
            assert "state success" in status or "state failed" in status, status
            watched.locator(".widget-play button").first.click()
            _wait_for_text(watched, "press New game to play again")

            # A new game, then the wasd key map: the buttons are relabelled and w/s/a/d keys play.
            watched.locator("button.widget-button", has_text="New game").click()
            _wait_for_text(watched, "new game (seed 2)")
            wasd = keys_by_direction("wasd")
            watched.locator("select").select_option(label=f"wasd ({' '.join(wasd[d] for d in DIRECTIONS)})")
            _wait_for_text(watched, "key map wasd")
            assert (
                watched.locator("button.widget-button", has_text=f"{wasd['up']} {ARROWS['up']}").count() == 1
            )
            fresh = _read_board(watched)
            wasd_direction = _changing_direction(fresh)
            watched.get_by_role("textbox", name="Keys").type(wasd[wasd_direction])
            _wait_for_moves(page, 1)
            _assert_moved(fresh, _read_board(watched), wasd_direction)

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            watched.screenshot(path=str(SCREENSHOT))
            assert SCREENSHOT.stat().st_size > 5_000

            # Saving, as autosave would, leaves the committed .py mirror as it is.
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
            assert (tmp_path / "work" / MIRROR.name).read_text(encoding="utf-8") == MIRROR.read_text(
                encoding="utf-8"
            )
        finally:
            browser.close()


OPENED = """async (name) => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.context || panel.context.path !== name) return null;
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session.kernel;
  const info = await kernel.info;
  await kernel.spec;
  await new Promise(resolve => setTimeout(resolve, 1000));  // JupyterLab's own handlers of the reply
  const model = panel.context.model;
  return {
    dirty: model.dirty,
    kernel: info.language_info,
    language_info: model.getMetadata('language_info'),
    kernelspec: model.getMetadata('kernelspec'),
  };
}"""


def _open(page, url: str, name: str) -> dict:
    """Open a notebook, run nothing, and wait until its kernel has answered; what JupyterLab then holds."""
    page.goto(f"{url}/lab/tree/{name}?token={TOKEN}")
    page.wait_for_function(
        "name => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return w && w.context && w.context.path === name && w.sessionContext"
        " && w.sessionContext.isReady; }",
        arg=name,
    )
    return page.evaluate(OPENED, name)


def test_opening_a_notebook_leaves_it_unmodified(jupyterlab: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    work = tmp_path / "work"
    # The control: the same notebook without the language_info the kernel reports, as committed before.
    control = json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))
    del control["metadata"]["language_info"]
    (work / "control.ipynb").write_text(json.dumps(control, indent=1), encoding="utf-8")
    before = {path.name: path.stat().st_mtime_ns for path in work.iterdir()}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(90_000)
            for notebook in NOTEBOOKS:
                opened = _open(page, jupyterlab, notebook.name)
                committed = json.loads(notebook.read_text(encoding="utf-8"))["metadata"]
                assert opened["language_info"] == opened["kernel"] == committed["language_info"], (
                    notebook.name
                )
                assert opened["kernelspec"] == committed["kernelspec"], notebook.name
                assert not opened["dirty"], f"opening {notebook.name} marked it modified"
            assert _open(page, jupyterlab, "control.ipynb")["dirty"], "the control should be marked modified"
        finally:
            browser.close()
    after = {path.name: path.stat().st_mtime_ns for path in work.iterdir() if path.name in before}
    assert after == before, "opening the notebooks wrote to them"
