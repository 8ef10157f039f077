"""The command line: help, one-line errors, a real `python -m helpers train`, then evaluate/export/play."""

from __future__ import annotations

import io
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli
from helpers import model as model_module
from helpers import runs as runs_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["export"], ["play"]])
def test_help_is_there_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m helpers" in capsys.readouterr().out


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_settings_are_split_by_section():
    settings = cli.parse_settings(["lora_rank=8", "game.size=4", "rewards.graded=true", "training.seed=1"])
    assert settings == {
        "training": {"lora_rank": "8", "seed": "1"},
        "game": {"size": "4"},
        "sandbox": {},
        "rewards": {"graded": "true"},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--profile", "cpu-tiny", "--set", "nonsense=1"],
            "unknown training setting(s) ['nonsense']",
        ),
        (["train", "--profile", "cpu-tiny", "--set", "lora_rank"], "--set takes key=value"),
        (["train", "--profile", "cpu-tiny", "--set", "board.size=4"], "unknown section 'board'"),
        (["train", "--profile", "cpu-tiny", "--set", "lora_rank=big"], "must be an int, not 'big'"),
        (["train", "--output-dir", "{tmp}/none", "--resume"], "nothing to resume: {tmp}/none does not exist"),
        (["train", "--output-dir", "{tmp}", "--resume"], "holds no run_config.json"),
        (
            ["train", "--set", "profile=h100"],
            "--set 'profile=h100': the profile is chosen with --profile NAME",
        ),
        (["evaluate", "--set", "training.profile=cpu"], "the profile is chosen with --profile NAME"),
        (
            ["train", "--profile", "cpu-tiny", "--lr-scheduler-type", "cosin"],
            "lr_scheduler_type must be one of linear",
        ),
        (["train", "--profile", "dgx-spark", "--output-dir", "{tmp}/gpu"], "profile 'dgx-spark' loads"),
        (["train", "--profile", "cpu-tiny", "--load-in-4bit", "true"], "load_in_4bit needs a CUDA GPU"),
        (
            ["train", "--profile", "cpu-tiny", "--num-generations", "3"],
            "not a multiple of num_generations (3)",
        ),
        (["evaluate", "--profile", "dgx-spark"], "profile 'dgx-spark' loads"),
        (
            ["train", "--profile", "cpu-tiny", "--max-steps", "0"],
            "training.max_steps must be at least 1, not 0",
        ),
        (
            ["train", "--profile", "cpu-tiny", "--max-steps", "-1"],
            "training.max_steps must be at least 1, not -1",
        ),
        (
            ["train", "--profile", "cpu-tiny", "--lora-rank", "big"],
            "training.lora_rank must be an int, not 'big'",
        ),
        (
            ["train", "--profile", "cpu-tiny", "--rewards.graded", "maybe"],
            "rewards.graded must be true or false",
        ),
        (["play", "--strategy", "{tmp}/missing.py"], "neither a file nor a baseline"),
        (["play", "--set", "lora_rank=3"], "play takes game settings only"),
        (["play", "--set", "game.size=1", "--strategy", "greedy"], "size must be at least 2"),
    ],
)
def test_mistakes_end_in_one_line_without_a_traceback(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(model_module, "cuda_available", lambda: False)
    monkeypatch.chdir(tmp_path)  # a default output folder would be made here
    status = cli.main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # a refused command leaves nothing: no folder, no log


def test_every_setting_is_a_flag_with_its_docstring_as_help(capsys):
    from dataclasses import fields

    from helpers.config import SECTIONS, field_docs

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for section, cls in SECTIONS.items():
        for item in fields(cls):
            if item.name == "profile":
                continue
            flag = item.name.replace("_", "-")
            assert (f"--{flag}" if section == "training" else f"--{section}.{flag}") in text, item.name
            assert " ".join(field_docs(cls)[item.name].split())[:40] in text, item.name


def test_flags_reach_the_configuration():
    argv = ["train", "--profile", "cpu", "--lora-rank", "8", "--game.size", "5", "--rewards.graded", "true"]
    config = cli.build_config(cli.build_parser().parse_args(argv))
    assert (config.training.lora_rank, config.game.size, config.rewards.graded) == (8, 5, True)
    assert config.training.learning_rate == 6e-4  # the rest stays the profile's


def test_train_takes_a_game_preset():
    args = cli.build_parser().parse_args(["train", "--profile", "cpu", "--preset", "4x4-512"])
    config = cli.build_config(args)
    assert (config.game.size, config.game.target, config.rewards.graded) == (4, 512, True)


def test_a_value_error_in_training_is_a_crash_not_a_usage_mistake(tmp_path, monkeypatch):
    # A ValueError hours into a run is a bug or a broken library, not a mistake in the command line:
    # it keeps its traceback (exit status 1) instead of a one-line "error:" with status 2.
    def crash(*args, **kwargs):
        raise ValueError("shapes do not match")

    monkeypatch.setattr(cli, "train", crash)
    with pytest.raises(ValueError, match="shapes do not match"):
        cli.main(["train", "--profile", "cpu-tiny", "--output-dir", str(tmp_path / "run")])


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """`python -m helpers train` in a fresh process, as under tmux: one GRPO step of the tiny model."""
    output_dir = tmp_path_factory.mktemp("cli") / "run"
    command = [
        sys.executable,
        "-m",
        "helpers",
        "train",
        "--profile",
        "cpu-tiny",
        "--max-steps",
        "1",
        "--output-dir",
        str(output_dir),
        "--set",
        f"model_name={tiny_model_dir}",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return output_dir, result


@pytest.mark.slow  # trains a run first (about 15 s)
def test_train_runs_headless_and_logs_to_a_file(trained_run):
    output_dir, result = trained_run
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained to step 1" in result.stdout
    log = (output_dir / "train.log").read_text()
    assert "profile cpu-tiny: chosen explicitly" in log  # printed lines reach the file
    assert "step 1/1 reward" in log  # and so do the per-step log records
    assert (output_dir / "checkpoint-1" / "adapter_model.safetensors").is_file()


@pytest.mark.slow  # trains a run first (about 15 s)
def test_train_again_in_the_same_folder_asks_for_resume(trained_run, capsys):
    output_dir, _ = trained_run
    status = cli.main(["train", "--profile", "cpu-tiny", "--output-dir", str(output_dir)])
    assert status == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.slow  # trains a run first (about 15 s)
def test_evaluate_compares_trained_and_untrained_on_held_out_games(trained_run, capsys):
    output_dir, _ = trained_run
    checkpoint = output_dir / "checkpoint-1"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--strategies", "2", "--games", "2"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "2 strategies from each model, 2 held-out games each (seeds 1000000000..1000000001)" in out
    for phase in ("sampling 2 strategies from the trained model", "playing 4 strategies on 2 held-out games"):
        assert phase in err  # the long wait says what it is doing
    for row in ("| untrained model (2 samples) ", "| trained model (2 samples) ", "| random ", "| greedy "):
        assert row in out
    folder = output_dir / "heldout-checkpoint-1"
    assert (folder / "report.md").is_file() and (folder / "heldout.png").is_file()
    assert len(list((folder / "strategies").glob("*.txt"))) == 4
    assert "evaluate --checkpoint" in (output_dir / "evaluate.log").read_text()
    if (folder / "best.py").is_file():
        assert f"play --checkpoint {checkpoint}" in out
    else:
        assert "no sampled strategy played a game" in out


@pytest.mark.slow  # trains a run first (about 15 s)
def test_evaluate_refuses_seeds_the_run_trained_on(trained_run, capsys):
    output_dir, _ = trained_run
    argv = ["evaluate", "--checkpoint", str(output_dir / "checkpoint-1"), "--seed", "3407", "--games", "2"]
    assert cli.main(argv) == 2
    assert "overlap the training games 3407..3408" in capsys.readouterr().err


def test_play_checkpoint_watches_the_best_held_out_strategy(tmp_path, capsys):
    checkpoint = tmp_path / "run" / "checkpoint-7"
    checkpoint.mkdir(parents=True)
    assert cli.main(["play", "--checkpoint", str(checkpoint), "--delay", "0", "--no-color"]) == 2
    assert f"evaluate --checkpoint {checkpoint}" in capsys.readouterr().err
    folder = tmp_path / "run" / "heldout-checkpoint-7"
    folder.mkdir()
    (folder / "best.py").write_text("# trained-01\ndef strategy(board):\n    return 'a'\n")
    (folder / "report.json").write_text('{"seeds": [1000000005]}')
    assert cli.main(["play", "--checkpoint", str(checkpoint), "--delay", "0", "--no-color"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("stalled: ") and "seed 1000000005" in last


@pytest.mark.slow  # trains a run first (about 15 s)
def test_the_notebook_after_the_cli_exports_the_run_not_a_fresh_adapter(
    trained_run, tiny_model_dir, tmp_path
):
    # What the notebook does after `python -m helpers train`: load the model, run the training cell
    # (the run is complete), export. The export must hold the run's adapter, and a fresh model must
    # never replace it.
    from safetensors.torch import load_file

    from helpers.export import ExportError, export_model, read_stamp
    from helpers.model import load_model
    from helpers.runs import saved_config
    from helpers.training import train

    output_dir, _ = trained_run
    config = saved_config(output_dir)
    model, tokenizer = load_model(config)
    result = train(config, resume="auto", model=model, tokenizer=tokenizer, progress=False)
    assert result.seconds == 0.0 and "now holds that checkpoint's adapter" in result.model_holds
    exported = export_model(model, tokenizer, config, "lora", tmp_path / "export-lora", verify=False)
    assert read_stamp(exported.path)["steps"] == 1
    ours = load_file(Path(exported.path) / "adapter_model.safetensors")
    run = load_file(output_dir / "checkpoint-1" / "adapter_model.safetensors")
    assert ours.keys() == run.keys() and all((ours[k] == run[k]).all() for k in run)
    fresh, _ = load_model(config)
    with pytest.raises(ExportError, match="step 1 .* this model holds step 0"):
        export_model(fresh, tokenizer, config, "lora", tmp_path / "export-lora")


@pytest.mark.slow  # trains a run first (about 15 s)
def test_export_writes_a_checked_lora_adapter(trained_run, capsys):
    output_dir, _ = trained_run
    assert cli.main(["export", "--checkpoint", str(output_dir / "checkpoint-1"), "--format", "lora"]) == 0
    captured = capsys.readouterr()
    assert "Loading weights" not in captured.err and "Writing model shards" not in captured.err
    out = captured.out
    assert f"lora: {output_dir / 'export-lora'}" in out
    assert (output_dir / "export-lora" / "adapter_model.safetensors").is_file()


def test_play_takes_keys_and_arrows_and_quits_on_q(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\x1b[Cxq"))
    assert cli.main(["play", "--seed", "1", "--no-color", "--set", "game.size=4"]) == 0
    out = capsys.readouterr().out
    assert "keys: é=up, u=down, a=left, i=right" in out
    assert "'x' is not a key here" in out
    assert "moves 2 " in out


def test_play_watches_a_strategy_file_in_the_sandbox(tmp_path, capsys):
    path = tmp_path / "strategy.md"
    path.write_text('Here it is:\n```python\ndef strategy(board):\n    return "a"\n```\n')
    assert cli.main(["play", "--strategy", str(path), "--seed", "2", "--delay", "0", "--no-color"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("stalled: ") and "seed 2" in out[-1]  # always left: it stops moving
    assert any("strategy.md: 'a'" in line for line in out)


def test_play_watches_a_baseline(capsys):
    argv = [
        "play",
        "--strategy",
        "greedy",
        "--seed",
        "0",
        "--delay",
        "0",
        "--no-color",
        "--set",
        "game.size=3",
    ]
    assert cli.main(argv) == 0
    assert "greedy" in capsys.readouterr().out


@pytest.mark.slow
def test_tensorboard_and_trackio_record_a_run_offline(tiny_model_dir, tmp_path):
    import sqlite3

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir = tmp_path / "run"
    command = [sys.executable, "-m", "helpers", "train", "--profile", "cpu-tiny", "--max-steps", "2"]
    command += ["--output-dir", str(output_dir), "--model-name", str(tiny_model_dir), "--no-progress"]
    command += ["--report-to", "tensorboard,trackio"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRACKIO_DIR": str(tmp_path / "trackio"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (events,) = (output_dir / "runs").iterdir()
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("train/reward")] == [1, 2]
    with sqlite3.connect(tmp_path / "trackio" / "gpt-oss-2048.db") as database:
        logged = [row[0] for row in database.execute("select metrics from metrics")]
    assert sum(b'"train/reward"' in row or b'"reward"' in row for row in logged) == 2


def test_report_to_names_known_trackers_only():
    from helpers.config import make_config

    assert make_config("cpu-tiny", report_to="tensorboard, trackio").training.report_to
    for wrong in ("mlflow", "none,tensorboard", ""):
        with pytest.raises(ValueError, match="training.report_to must be none, or some of"):
            make_config("cpu-tiny", report_to=wrong)


def test_processes_launch_the_same_training_through_accelerate():
    argv = ["train", "--profile", "h100", "--processes", "4", "--max-steps", "9", "--processes=4"]
    command = cli.launch_command(argv, 4)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "4" and "--multi_gpu" in command
    assert command[-7:] == ["-m", "helpers", "train", "--profile", "h100", "--max-steps", "9"]
    assert "--processes" not in command and "--processes=4" not in command


def test_each_of_several_processes_gets_its_share_of_the_cores(monkeypatch, tmp_path):
    from helpers import sandbox_pool
    from helpers.config import make_config
    from helpers.sandbox import auto_workers
    from helpers.sandbox_pool import MAX_AUTO_WORKERS
    from helpers.training import for_this_process

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(sandbox_pool, "CGROUP_CPU_MAX", tmp_path / "no-quota")
    config = make_config("h100")
    assert for_this_process(config) == config  # alone: the pool sizes itself, one worker a core
    assert auto_workers() == 16 and auto_workers(2) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert for_this_process(config).sandbox.max_workers == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert for_this_process(config).sandbox.max_workers == 1
    chosen = make_config("h100", sandbox={"max_workers": 3})
    assert for_this_process(chosen).sandbox.max_workers == 3  # a number the user chose stays
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(128)), raising=False)
    assert auto_workers() == MAX_AUTO_WORKERS == 32
    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")  # a container allowed 2.5 cores
    monkeypatch.setattr(sandbox_pool, "CGROUP_CPU_MAX", quota)
    assert auto_workers() == 3 and auto_workers(2) == 1
    quota.write_text("max 100000\n")
    assert auto_workers() == 32


def test_the_group_of_processes_is_closed_before_exit(tmp_path, monkeypatch):
    import torch.distributed as dist

    from helpers.runs import end_process_group

    end_process_group()  # no group: nothing to do
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "0")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert dist.is_initialized()
    end_process_group()
    assert not dist.is_initialized()


def test_processes_are_checked_before_anything_starts(capsys):
    assert cli.main(["train", "--profile", "cpu-tiny", "--processes", "0"]) == 2
    assert "--processes must be at least 1" in capsys.readouterr().err
    # 2 processes x 2 completions each is not a multiple of 3 generations
    assert cli.main(["train", "--profile", "cpu-tiny", "--processes", "2", "--num-generations", "3"]) == 2
    assert "not a multiple of num_generations (3)" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_train_one_run_that_rank_zero_speaks_for(tiny_model_dir, tmp_path):
    output_dir = tmp_path / "run"
    command = [sys.executable, "-m", "helpers", "train", "--processes", "2", "--profile", "cpu-tiny"]
    command += [
        "--max-steps",
        "2",
        "--output-dir",
        str(output_dir),
        "--model-name",
        str(tiny_model_dir),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "no CUDA GPU: the 2 processes share this machine's CPU"
    )  # what it is worth here
    assert lines[1].startswith("+ ") and "accelerate.commands.launch" in lines[1]  # the command it launched
    assert sum(line.startswith("trained to step 2") for line in lines) == 1
    assert sum(line.startswith("profile cpu-tiny") for line in lines) == 1
    assert "(2 processes, these settings in each)" in result.stdout
    log = (output_dir / "train.log").read_text()
    assert log.count("step 1/2 reward") == 1 and log.count("step 2/2 reward") == 1
    assert [r["step"] for r in json_lines(output_dir / "metrics.jsonl")] == [1, 2]
    ours, theirs = (
        json_lines(output_dir / "completions.jsonl"),
        json_lines(output_dir / "completions-rank1.jsonl"),
    )
    assert len(ours) == len(theirs) > 0  # each process logged its own share of the completions
    # rank 1's standard output went to its own file, not the console
    assert (output_dir / "console-rank1.log").read_text().startswith("=== ")
    assert "rank 1 of 2: this process's standard output" in (output_dir / "console-rank1.log").read_text()
    assert (output_dir / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert f"train --output-dir {output_dir} --processes 2 --resume --max-steps N" in result.stdout
    # resumed in one process, its steps would train on half the completions with a fresh random state
    alone = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "train",
            "--output-dir",
            str(output_dir),
            "--resume",
            "--max-steps",
            "3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alone.returncode == 2, alone.stderr[-3000:]
    assert "checkpoint-2 was trained in 2 processes and this resume would run in 1 process" in alone.stderr
    assert "--processes 2" in alone.stderr and "Traceback" not in alone.stderr


@pytest.mark.slow
def test_two_machines_sharing_the_run_folder_train_one_run(tiny_model_dir, tmp_path):
    # Past one host (README, "Several GPUs"): accelerate's own launcher on each machine, here two on localhost
    # that share the output folder as machines would share a file system; one process on each.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    output_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    machines = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"),
                *("--num_machines", "2", "--machine_rank", str(machine), "--main_process_ip", "127.0.0.1"),
                *("--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no"),
                *("-m", "helpers", "train", "--profile", "cpu-tiny", "--max-steps", "2"),
                *("--output-dir", str(output_dir), "--model-name", str(tiny_model_dir), "--no-progress"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for machine in (0, 1)
    ]
    try:
        (first_out, first_err), (second_out, second_err) = (
            machine.communicate(timeout=300) for machine in machines
        )
    finally:
        for machine in machines:  # a launcher left running (a timeout) would keep its processes
            if machine.poll() is None:
                machine.kill()
                machine.communicate()
    assert [machine.returncode for machine in machines] == [0, 0], first_err[-2000:] + second_err[-2000:]
    assert sum(line.startswith("trained to step 2") for line in first_out.splitlines()) == 1
    assert "(2 processes, these settings in each)" in first_out
    assert second_out == ""  # the second machine's process is rank 1: its output is in console-rank1.log
    assert "rank 1 of 2" in (output_dir / "console-rank1.log").read_text()
    assert [r["step"] for r in json_lines(output_dir / "metrics.jsonl")] == [1, 2]
    assert len(json_lines(output_dir / "completions.jsonl")) == len(
        json_lines(output_dir / "completions-rank1.jsonl")
    )
    checkpoint = output_dir / "checkpoint-2"
    assert sorted(p.name for p in checkpoint.glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]
    assert runs_module.checkpoint_processes(checkpoint) == 2


def json_lines(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_an_interrupted_training_says_whether_there_is_a_checkpoint_to_resume(tmp_path):
    import argparse

    from helpers.cli import _after_interruption
    from helpers.runs import COMPLETE_MARK

    args = argparse.Namespace(command="train", run_folder=str(tmp_path))
    assert "nothing to resume" in _after_interruption(args) and "without --resume" in _after_interruption(
        args
    )
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / COMPLETE_MARK).write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # interrupted while saving
    assert _after_interruption(args).startswith("interrupted; continue from checkpoint-3 with: ")
    assert _after_interruption(args).endswith(f"train --output-dir {args.run_folder} --resume")
    assert _after_interruption(argparse.Namespace(command="evaluate")) == "interrupted"


def test_evaluate_elsewhere_shows_a_play_command_that_finds_its_best_strategy(tmp_path):
    from helpers.cli import _play_arguments
    from helpers.config import GameConfig

    best = tmp_path / "my eval" / "best.py"
    arguments = _play_arguments(best, GameConfig(size=4, target=512, keymap="wasd"), 1_000_000_000)
    parsed = cli.build_parser().parse_args(["play", *shlex.split(arguments)])
    assert (parsed.strategy, parsed.seed, parsed.keymap) == (str(best), 1_000_000_000, "wasd")
    assert parsed.set == ["game.size=4", "game.target=512"]


def test_train_refuses_an_output_folder_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "a-file"
    path.write_text("mine")
    assert cli.main(["train", "--profile", "cpu-tiny", "--output-dir", str(path)]) == 2
    assert "is a file: choose another --output-dir" in capsys.readouterr().err
    assert path.read_text() == "mine"


def test_train_refuses_a_key_map_that_does_not_exist_before_touching_the_folder(tmp_path, capsys):
    folder = tmp_path / "run"
    assert (
        cli.main(["train", "--profile", "cpu-tiny", "--output-dir", str(folder), "--game.keymap", "qwerty"])
        == 2
    )
    assert "game settings: unknown keymap 'qwerty'" in capsys.readouterr().err
    assert not folder.exists()


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_checkpoint_that_does_not_exist_is_refused_before_any_log_is_written(
    command, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert cli.main([command, "--profile", "cpu-tiny", "--checkpoint", str(tmp_path / "checkpoint-9")]) == 2
    assert "no checkpoint folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder with a log of the mistake


def test_evaluate_refuses_a_report_folder_that_is_a_file_before_loading_a_model(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert cli.main(["evaluate", "--profile", "cpu-tiny", "--output", "afile"]) == 2
    assert "the report's folder afile is a file: choose another --output" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["afile"]  # no model built, no log


@pytest.mark.slow  # trains the tiny model for a few steps in a process of its own (about 20 s)
def test_sigterm_saves_the_step_under_way_and_the_run_resumes_from_it(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from helpers.runs import COMPLETE_MARK

    folder = tmp_path / "run"
    command = [sys.executable, "-m", "helpers", "train", "--profile", "cpu-tiny", "--max-steps", "200"]
    command += ["--save-steps", "1000", "--output-dir", str(folder), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130, out
    (checkpoint,) = folder.glob("checkpoint-*")
    step = int(checkpoint.name.split("-")[1])
    assert (checkpoint / COMPLETE_MARK).is_file() and 1 <= step < 200
    assert f"stopped by SIGTERM at step {step} of 200, saved in {checkpoint}" in out
    assert f"train --output-dir {folder} --resume" in out


def test_an_8bit_optimiser_without_bitsandbytes_is_refused_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--profile", "cpu-tiny", "--optim", "adamw_8bit", "--output-dir", "run"]) == 2
    err = capsys.readouterr().err
    assert "training.optim 'adamw_8bit' comes from bitsandbytes" in err and "--optim adamw_torch" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from helpers.runs import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_training_in_a_folder_in_use_is_refused_before_it_writes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(root=str(ROOT)), str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert cli.main(["train", "--profile", "cpu-tiny", "--output-dir", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"{folder} is in use by another training (process {holder.pid} on " in err
        assert "--output-dir" in err and "Traceback" not in err
        assert [path.name for path in folder.iterdir()] == [".training.lock"]  # no log, no run_config.json
    finally:
        holder.kill()
        holder.wait()
    with runs_module.run_folder_lock(folder):  # the kernel gave the dead holder's lock back
        pass


RANK_CONSOLE_PROBE = """
import os, sys
from helpers.runs import rank_console
SETUP
print("path:", rank_console(sys.argv[1], wait_s=0.5), flush=True)
print("a banner")
sys.stdout and sys.stdout.flush()
os.write(1, b"from C\\n")
print("a warning", file=sys.stderr)
"""


def _rank_probe(folder, rank="1", world="2", setup=""):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": rank, "WORLD_SIZE": world}
    if world is None:
        env.pop("WORLD_SIZE")
    probe = RANK_CONSOLE_PROBE.replace("SETUP", setup)
    result = subprocess.run(
        [sys.executable, "-c", probe, str(folder)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("rank", ["0", "3"])
def test_ranks_above_zero_print_into_a_file_of_their_own(tmp_path, rank):
    folder = tmp_path / "run"
    folder.mkdir()  # rank 0's to make
    for _ in range(2):  # a second start (a resume) appends
        result = _rank_probe(folder, rank, "4")
        assert result.stderr == "a warning\n"  # warnings and errors still reach the console
    file = folder / f"console-rank{rank}.log"
    if rank == "0":
        assert result.stdout == "path: None\na banner\nfrom C\n" and not file.exists()
    else:
        assert result.stdout == ""
        text = file.read_text()
        assert text.count("rank 3 of 4: this process's standard output") == 2
        assert text.count("a banner\nfrom C\n") == 2 and f"path: {file}" in text


def test_a_rank_keeps_the_console_where_its_file_cannot_be_used(tmp_path):
    # The folder never made (rank 0 refused the run): nothing is made in its place.
    result = _rank_probe(tmp_path / "never")
    assert result.stdout == "path: None\na banner\nfrom C\n" and not (tmp_path / "never").exists()
    assert "rank 1 prints on the console: " in result.stderr and "was not made within" in result.stderr
    # A folder where the file would be.
    (tmp_path / "run" / "console-rank1.log").mkdir(parents=True)
    result = _rank_probe(tmp_path / "run")
    assert result.stdout == "path: None\na banner\nfrom C\n"
    assert "console-rank1.log cannot be used" in result.stderr


@pytest.mark.parametrize(
    "setup",
    ["sys.stdout = None", "import io; sys.stdout = io.StringIO()", "os.close(1)"],
    ids=["no-stdout", "stdout-without-descriptor", "descriptor-1-closed"],
)
def test_a_rank_with_an_odd_standard_output_still_writes_its_file(tmp_path, setup):
    folder = tmp_path / "run"
    folder.mkdir()
    result = _rank_probe(folder, setup=setup)
    assert result.stdout == "" and result.stderr == "a warning\n"
    text = (folder / "console-rank1.log").read_text()
    assert "from C\n" in text  # descriptor 1 is the file in every case


def test_a_stray_rank_without_a_world_size_is_a_lone_main_process(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    result = _rank_probe(folder, rank="3", world=None)
    assert result.stdout == "path: None\na banner\nfrom C\n" and not list(folder.iterdir())
    monkeypatch.setenv("RANK", "3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (runs_module.process_rank(), runs_module.is_main_process()) == (0, True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (runs_module.process_rank(), runs_module.is_main_process()) == (3, False)
    monkeypatch.setenv("WORLD_SIZE", "many")
    assert runs_module.world_size() == 1


def test_the_folder_lock_nests_in_one_process_and_leaves_no_folder_it_made(tmp_path):
    folder = tmp_path / "new"
    with (
        runs_module.run_folder_lock(folder),
        runs_module.run_folder_lock(folder),
    ):  # the CLI's hold, then train's
        assert (folder / ".training.lock").is_file()
    assert not folder.exists()  # a run refused inside the lock leaves nothing behind
    folder.mkdir()
    (folder / "train.log").write_text("kept")
    with runs_module.run_folder_lock(folder):
        pass
    assert sorted(path.name for path in folder.iterdir()) == [".training.lock", "train.log"]


def test_a_file_system_without_locks_trains_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    folder = tmp_path / "nfs" / "run"
    with caplog.at_level("WARNING"), runs_module.run_folder_lock(folder):
        assert folder.is_dir()
    assert "has no file locks" in caplog.text and "would not be refused" in caplog.text
    assert not (tmp_path / "nfs").exists()  # both folders it made, held nothing: removed
    before = len(os.listdir("/dev/fd"))  # and no descriptor is kept
    with runs_module.run_folder_lock(folder):
        pass
    assert len(os.listdir("/dev/fd")) == before


def test_another_thread_of_the_same_process_is_refused_like_another_process(tmp_path):
    import threading

    folder, said = tmp_path / "run", []

    def second():
        try:
            with runs_module.run_folder_lock(folder):
                said.append("let in")
        except runs_module.RunFolderError as error:
            said.append(str(error))

    with runs_module.run_folder_lock(folder):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert said and "is in use by another training (process" in said[0]


def test_the_python_api_refuses_an_output_folder_that_is_a_file_before_making_anything(tmp_path, monkeypatch):
    from helpers.config import make_config
    from helpers.training import train

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(runs_module.RunFolderError, match="the output folder afile is a file"):
        train(make_config("cpu-tiny", output_dir="afile"))
    with pytest.raises(runs_module.RunFolderError, match="nothing to resume"):
        train(make_config("cpu-tiny", output_dir="outputs/new/run"), resume=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["afile"]


def test_resume_of_a_folder_that_does_not_exist_says_so_and_makes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--profile", "cpu-tiny", "--output-dir", "gone", "--resume"]) == 2
    assert "nothing to resume: gone does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no folder, no log


def test_an_empty_output_folder_name_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--profile", "cpu-tiny", "--output-dir", ""]) == 2
    assert "the output folder is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["train", "--profile", "gpu"], "error: argument --profile: invalid choice: 'gpu'"),
        (
            ["train", "--max_steps", "2"],
            "error: unrecognized arguments: --max_steps 2 (flags are spelt with hyphens: --max-steps)",
        ),
    ],
)
def test_a_mistyped_command_line_is_one_line_pointing_at_help(argv, said, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.startswith(said) and err.endswith("--help\n") and err.count("\n") == 1
