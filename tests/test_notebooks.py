"""The notebooks as committed: mirrors in sync, no outputs, GPU cells tagged last, and every cell runs.

- Every notebook has a jupytext percent-format `.py` mirror with the same cells (type, source, tags).
- Nothing executed is committed: no outputs, execution counts, execution timings or widget state.
- In the main notebook the GPU cells (tagged `gpu` and `nbval-skip`) come after every CPU cell, so the
  CPU part is one unbroken prefix; each code cell follows a markdown cell that says what it does.
- `pytest --nbval-lax` runs every cell not tagged `nbval-skip`, on the CPU, in a subprocess.
- The whole main notebook, GPU cells included, runs on the CPU with the `cpu-tiny` profile (slow), and
  with the small real model of the `cpu` profile for two steps through its `parameters` cell (slow).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from helpers.config import make_config
from helpers.metrics import read_metrics

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "gpt_oss_20B_RL_2048_Game.ipynb"
NOTEBOOKS = [MAIN] + sorted((ROOT / "notebooks").glob("*.ipynb"))
GPU_TAGS = {"gpu", "nbval-skip"}


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """What a reader sees of each cell: its type, its source and its tags."""
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ()))) for cell in notebook.cells
    ]


def mirror_drift(notebook_path: Path) -> list[str]:
    """How the `.py` mirror differs from its notebook, cell by cell; empty when they agree."""
    mirror_path = notebook_path.with_suffix(".py")
    if not mirror_path.is_file():
        return [
            f"{mirror_path.name} is missing (run `jupytext --set-formats ipynb,py:percent {notebook_path.name}`)"
        ]
    notebook = _cells(nbformat.read(notebook_path, as_version=4))
    mirror = _cells(jupytext.read(mirror_path))
    problems = [
        f"cell {i}: notebook {a!r} != mirror {b!r}"
        for i, (a, b) in enumerate(zip(notebook, mirror, strict=False))
        if a != b
    ]
    if len(notebook) != len(mirror):
        problems.append(f"{len(notebook)} cells in the notebook, {len(mirror)} in the mirror")
    return problems


def executed_traces(notebook: nbformat.NotebookNode) -> list[str]:
    """Traces of an execution that must not be committed: outputs, counts, timings, widget state."""
    traces = ["widget state in the notebook metadata"] if "widgets" in notebook.metadata else []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            traces.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            traces.append(f"cell {i} has an execution count")
        if "execution" in cell.metadata:
            traces.append(f"cell {i} has execution timings")
    return traces


def test_the_four_notebooks_exist():
    assert _ids(NOTEBOOKS) == [
        "gpt_oss_20B_RL_2048_Game.ipynb",
        "notebooks/evaluate_strategies.ipynb",
        "notebooks/play_2048.ipynb",
        "notebooks/training_dashboard.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_mirror_matches_its_notebook(path):
    assert mirror_drift(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_paired_in_percent_format(path):
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata["jupytext"]["formats"] == "ipynb,py:percent"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs_or_widget_state(path):
    assert executed_traces(nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_a_markdown_cell_comes_before_every_code_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    orphans = [
        i
        for i, cell in enumerate(cells)
        if cell.cell_type == "code" and (i == 0 or cells[i - 1].cell_type != "markdown")
    ]
    assert orphans == []


def test_the_drift_check_notices_an_edited_mirror(tmp_path):
    notebook = tmp_path / "pair.ipynb"
    notebook.write_text(
        (ROOT / "notebooks" / "play_2048.ipynb").read_text(encoding="utf-8"), encoding="utf-8"
    )
    mirror = (ROOT / "notebooks" / "play_2048.py").read_text(encoding="utf-8")
    (tmp_path / "pair.py").write_text(mirror, encoding="utf-8")
    assert mirror_drift(notebook) == []
    (tmp_path / "pair.py").write_text(mirror.replace("seed=0", "seed=99", 1), encoding="utf-8")
    assert len(mirror_drift(notebook)) == 1


def test_the_output_check_notices_an_executed_cell():
    notebook = nbformat.read(ROOT / "notebooks" / "play_2048.ipynb", as_version=4)
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.execution_count = 1
    code.outputs = [nbformat.v4.new_output("stream", text="hello")]
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    assert len(executed_traces(notebook)) == 3


def test_gpu_cells_of_the_main_notebook_are_tagged_and_come_last():
    code = [cell for cell in nbformat.read(MAIN, as_version=4).cells if cell.cell_type == "code"]
    tagged = [set(cell.metadata.get("tags", ())) >= GPU_TAGS for cell in code]
    assert any(tagged), "the model, training and export cells must be tagged gpu and nbval-skip"
    first_gpu = tagged.index(True)
    assert all(tagged[first_gpu:]), "a CPU cell after the GPU section breaks the CPU prefix"
    assert not any(tagged[:first_gpu])
    gpu_sources = "\n".join(cell.source for cell in code[first_gpu:])
    for call in ("load_model(", "train(", "export"):
        assert call in gpu_sources
    assert not any(call in cell.source for cell in code[:first_gpu] for call in ("load_model(", "train("))


def _notebook_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


@pytest.mark.slow
def test_nbval_runs_every_cpu_cell():
    """`pytest --nbval-lax` over the four notebooks; GPU-tagged cells are skipped by their tag."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            "--nbval-cell-timeout=120",
            "-p",
            "no:cacheprovider",
            "-q",
            *(str(path) for path in NOTEBOOKS),
        ],
        cwd=ROOT,
        env=_notebook_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " failed" not in result.stdout and " passed" in result.stdout


def _printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the executed cells printed (stdout and stderr streams)."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )


def _run(
    notebook_path: Path, folder: Path, env: dict[str, str], source: str | None = None
) -> nbformat.NotebookNode:
    """Execute a notebook with `folder` as its working directory (outputs/ goes there); returns it executed."""
    from nbclient import NotebookClient

    notebook = nbformat.read(notebook_path, as_version=4)
    if source is not None:
        _with_parameters(notebook, source)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env=env)
    return notebook


@pytest.mark.slow
def test_the_whole_main_notebook_runs_on_cpu_tiny_and_again_without_losing_the_run(tmp_path):
    """Every cell of the walk-through, model, GRPO training and export included, on the tiny gpt-oss;
    then Restart & Run All: the run is complete, the model takes its adapter, the exports keep their step."""
    env = {**_notebook_env(), "GPT_OSS_2048_PROFILE": "cpu-tiny", "HF_HUB_OFFLINE": "1"}
    printed = _printed(_run(MAIN, tmp_path, env))
    assert "profile: cpu-tiny (set by the environment variable GPT_OSS_2048_PROFILE)" in printed
    steps = make_config("cpu-tiny").training.max_steps
    assert f"{steps} steps in " in printed
    run = tmp_path / "outputs" / "cpu-tiny"
    assert (run / "metrics.jsonl").is_file()
    assert (run / f"checkpoint-{steps}").is_dir()
    for fmt in ("lora", "merged_16bit", "mxfp4"):
        assert (run / f"export-{fmt}").is_dir(), printed[-3000:]
        assert re.search(
            rf"^{fmt}: \S+ \(step {steps}\) in \d+ s, (verified|inconclusive): ", printed, re.M
        ), printed[-3000:]
    adapter = (run / "export-lora" / "adapter_model.safetensors").read_bytes()

    again = _printed(_run(MAIN, tmp_path, env))
    assert f"{steps} steps in 0 s" in again
    assert (
        f"the run is complete at checkpoint-{steps} (step {steps} of {steps}): the model now holds that checkpoint's adapter"
        in again
    )
    for fmt in ("lora", "merged_16bit", "mxfp4"):
        assert re.search(rf"^{fmt}: \S+ \(step {steps}\) in \d+ s, ", again, re.M), again[-3000:]
    assert (
        run / "export-lora" / "adapter_model.safetensors"
    ).read_bytes() == adapter  # the same trained adapter


def _with_parameters(notebook: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """The notebook with its `parameters` cell replaced, as papermill would do it."""
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", ()))
    cell.source = source
    return notebook


@pytest.mark.slow
def test_the_main_notebook_trains_the_small_real_model_on_cpu(tmp_path, small_model_dir):
    """The CPU path a user gets: SmolLM2 trains (two steps here), is evaluated on held-out games, exports."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "smollm2-135m-instruct").symlink_to(small_model_dir)  # converted once per session
    env = {key: value for key, value in _notebook_env().items() if key != "GPT_OSS_2048_PROFILE"}
    env |= {"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    notebook = _run(MAIN, tmp_path, env, source="max_steps = 2\npreset = None")

    printed = _printed(notebook)
    assert "profile: cpu (no NVIDIA GPU found: the small real model" in printed
    assert "2 steps in " in printed and "mean reward, first step -> last step: " in printed
    run = tmp_path / "outputs" / "cpu"
    assert len(read_metrics(run / "completions.jsonl")) == 2 * make_config("cpu").training.num_generations
    tables = "".join(
        output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert "trained model (16 samples)" in tables and "untrained model (16 samples)" in tables
    assert re.search(r"^lora: \S+ \(step 2\) in \d+ s, (verified|inconclusive): ", printed, re.M), printed[
        -3000:
    ]
    assert re.search(r"^mxfp4: not exported: .*experts", printed, re.M), printed[-3000:]
