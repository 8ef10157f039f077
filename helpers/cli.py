"""The command line, for headless day-long runs under tmux or screen: `python -m helpers <command>`.

    python -m helpers train --profile cpu-tiny --max-steps 4 --output-dir outputs/cpu-tiny
    python -m helpers train --output-dir outputs/run1 --resume --max-steps 2000
    python -m helpers evaluate --checkpoint outputs/run1/checkpoint-1000 --strategies 8 --games 50
    python -m helpers export --checkpoint outputs/run1/checkpoint-1000 --format merged_16bit
    python -m helpers play                          # play with the keyboard
    python -m helpers play --strategy greedy        # watch a baseline, or a file holding a strategy

Every command that touches a run writes its log to `<output_dir>/<command>.log` as well as the
console, so nothing is lost when the terminal goes away. A resume takes the settings saved with the
run; `--set key=value` overrides any setting (`lora_rank=8`, `game.size=4`, `rewards.graded=true`).
Mistakes in the arguments or the setup end with one line saying what to do, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from helpers.config import GAME_PRESETS, PROFILES, Config, EvalConfig, GameConfig, field_docs, make_config
from helpers.config import SECTIONS as CONFIG_SECTIONS
from helpers.evaluate import BASELINES, PRESETS
from helpers.export import FORMATS, ExportError, ExportVerificationError, export_model, format_unsupported
from helpers.game import KEYMAPS, from_config, keys_by_direction, play_keys, render_ansi, render_text
from helpers.heldout import (
    BEST_FILE,
    REPORT_FILE,
    check_held_out,
    check_report_folder,
    evaluate_models,
    heldout_folder,
    markdown_table,
    summary_rows,
    write_report,
)
from helpers.metrics import completions_path, learning_line, metrics_path, read_metrics
from helpers.model import ModelLoadError, check_loadable, cuda_available, load_model
from helpers.runs import (
    RUN_CONFIG_FILE,
    RunFolderError,
    check_processes,
    checkpoint_step,
    end_process_group,
    is_main_process,
    latest_checkpoint,
    nothing_to_resume,
    run_folder_lock,
    saved_config,
    world_size,
)
from helpers.sandbox import execute_strategy, extract_function
from helpers.training import ConfigurationError, check_trainable, start_reward_pool, train

SECTIONS = ("game", "sandbox", "rewards")
"""`--set` prefixes that address a section other than training (`game.size=4`)."""

ARROW_KEYS = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[D": "left", "\x1b[C": "right"}
"""Terminal escape sequences of the arrow keys, which `play` accepts beside the key map's keys."""

LIBRARY_LOGGERS = ("transformers", "trl", "peft")
"""Loggers of the libraries whose warnings belong in a run's log file."""

QUIT_KEYS = {"q", "\x03", "\x04", ""}
"""`q`, Ctrl-C, Ctrl-D and end of input stop `play`."""

_open_logs: list[tuple[Any, logging.Handler]] = []
"""(file, handler) of each log file the running command writes, closed when it ends."""


class UsageError(Exception):
    """A mistake in the command line or the setup; printed as one line, exit status 2."""


# --- settings --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _settings_mistakes() -> Any:
    """Turn the ValueError of a bad setting (`--set lora_rank=big`, a bad profile) into a UsageError.

    Only around building settings: a ValueError raised later, in training, is a crash with a traceback.
    """
    try:
        yield
    except ValueError as error:
        raise UsageError(str(error)) from error


def parse_settings(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`--set` pairs by section: `{"training": {...}, "game": {...}, "sandbox": {...}, "rewards": {...}}`."""
    settings: dict[str, dict[str, Any]] = {section: {} for section in ("training", *SECTIONS)}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes key=value, not {pair!r}")
        section, dot, name = key.strip().rpartition(".")
        if not dot:
            section = "training"
        if section not in settings:
            raise UsageError(
                f"--set {pair!r}: unknown section {section!r}; use training, {', '.join(SECTIONS)}"
            )
        if section == "training" and name == "profile":
            raise UsageError(f"--set {pair!r}: the profile is chosen with --profile NAME")
        settings[section][name] = value
    return settings


def build_config(args: argparse.Namespace, saved_run: str | os.PathLike | None = None) -> Config:
    """The configuration from `--profile`, `--set` and the command's own flags, or from a saved run."""
    settings = parse_settings(getattr(args, "set", None) or [])
    for section, cls in CONFIG_SECTIONS.items():
        for item in fields(cls):
            value = getattr(args, _dest(section, item.name), None)
            if value is not None and not (section == "training" and item.name == "profile"):
                settings[section][item.name] = str(value)
    training = settings.pop("training")
    preset = getattr(args, "train_preset", None)
    with _settings_mistakes():
        if saved_run is not None and args.profile is None:
            if preset is not None:
                raise UsageError(
                    "--preset starts a new run on another game: a resume keeps the run's own game"
                )
            return saved_config(saved_run, **settings, **training)
        return make_config(args.profile, preset=preset, **settings, **training)


def run_folder_of(checkpoint: str | None) -> Path | None:
    """The run folder a checkpoint belongs to, when it holds the run's saved settings.

    Raises `UsageError` when there is no such checkpoint folder: before any log is started for it.
    """
    if checkpoint is None:
        return None
    if not Path(checkpoint).is_dir():
        raise UsageError(
            f"no checkpoint folder {checkpoint} (a run's checkpoint-N, or an exported export-lora)"
        )
    for folder in (Path(checkpoint), Path(checkpoint).parent):
        if (folder / RUN_CONFIG_FILE).is_file():
            return folder
    return None


# --- logging ---------------------------------------------------------------------------------------


class _Tee:
    """A text stream that writes to the console and to the log file."""

    def __init__(self, console: Any, file: Any) -> None:
        self.console, self.file = console, file

    def write(self, text: str) -> int:
        self.file.write(text)
        self.file.flush()
        return self.console.write(text)

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def start_log(folder: str | os.PathLike, args: argparse.Namespace) -> Path:
    """Send log records and printed lines to `<folder>/<command>.log` as well as the console."""
    path = Path(folder) / f"{args.command}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a", encoding="utf-8")
    file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} python -m helpers {' '.join(args.argv)}\n")
    handler = logging.StreamHandler(file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    _open_logs.append((file, handler))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    for name in LIBRARY_LOGGERS:  # these libraries do not propagate to the root logger
        library = logging.getLogger(name)
        if not library.propagate:
            library.addHandler(handler)
    logging.captureWarnings(True)
    sys.stdout = _Tee(sys.stdout, file)
    return path


def _stop_logs(stdout: Any) -> None:
    """Undo `start_log`: the console alone again, handlers removed, files closed."""
    sys.stdout = stdout
    logging.captureWarnings(False)
    for file, handler in _open_logs:
        for logger in (logging.getLogger(), *map(logging.getLogger, LIBRARY_LOGGERS)):
            logger.removeHandler(handler)
        file.close()
    _open_logs.clear()


def _console_handler() -> logging.Handler:
    """Show the package's log lines (one per training step) on the console."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("helpers").addHandler(handler)
    logging.getLogger("helpers").setLevel(logging.INFO)
    return handler


# --- commands --------------------------------------------------------------------------------------


def launch_command(argv: Sequence[str], processes: int) -> list[str]:
    """`accelerate launch` running this same training in `processes` processes (one per GPU).

    The argument list is the command's own, without `--processes`; accelerate sets RANK, WORLD_SIZE
    and LOCAL_WORLD_SIZE, which the training reads (`helpers.runs`).
    """
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            rest.append(arg)
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "helpers", *rest,
    ]  # fmt: skip


def _run_launcher(command: list[str]) -> int:
    """Run `accelerate launch` to its end. SIGTERM is passed on to it (it stops its processes); Ctrl-C reaches
    every process of the terminal by itself, so this one keeps waiting for them to end."""
    process = subprocess.Popen(command)
    forwarding = threading.current_thread() is threading.main_thread()
    before = (
        signal.signal(signal.SIGTERM, lambda number, frame: process.send_signal(number))
        if forwarding
        else None
    )
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue
    finally:
        if forwarding:
            signal.signal(signal.SIGTERM, before)


def cmd_train(args: argparse.Namespace) -> int:
    """Train with GRPO; resume a run in its output folder with --resume."""
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes must be at least 1, not {args.processes}")
    if (args.processes or 1) > 1 and "LOCAL_RANK" not in os.environ:
        config = build_config(args, saved_run=None if not args.resume else args.output_dir)
        check_trainable(config, args.processes)
        resumed = latest_checkpoint(config.training.output_dir) if args.resume else None
        if resumed is not None and checkpoint_step(resumed) < config.training.max_steps:
            check_processes(resumed, args.processes)
        with run_folder_lock(config.training.output_dir):
            pass  # a folder in use is refused here, in one line, before any process starts (rank 0 holds it after)
        os.environ[LAUNCHED_PROCESSES] = str(args.processes)  # the processes' advice names --processes
        command = launch_command(args.argv, args.processes)
        if not cuda_available():
            print(
                f"no CUDA GPU: the {args.processes} processes share this machine's CPU, each generating its own "
                "completions, so a step does more work in no less time (this path is here to be tested)",
                flush=True,
            )
        print("+ " + " ".join(command), flush=True)
        return _run_launcher(command)
    main_process = is_main_process()
    say = print if main_process else _silent
    resume_from = None
    if args.resume:
        with _settings_mistakes():
            resume_from = args.output_dir or make_config(args.profile).training.output_dir
    config = build_config(args, saved_run=resume_from)
    check_trainable(config)  # before the run's folder and log exist: a refused run leaves nothing behind
    if args.resume is True and latest_checkpoint(config.training.output_dir) is None:
        raise RunFolderError(nothing_to_resume(config.training.output_dir))  # before a log makes the folder
    args.run_folder = config.training.output_dir  # for the advice after an interruption
    # Held from before the log starts: a second training in this folder is refused before it writes a line.
    with run_folder_lock(config.training.output_dir) if main_process else contextlib.nullcontext():
        if main_process:
            log_path = start_log(config.training.output_dir, args)
        else:
            logging.getLogger("helpers").setLevel(logging.WARNING)  # rank 0 speaks for the run
        processes = f" ({world_size()} processes, these settings in each)" if world_size() > 1 else ""
        say(f"profile {config.training.profile}: {config.profile_reason}{processes}")
        if main_process:
            say(f"log: {log_path}")
        result = train(config, resume=args.resume, live_plot=False, progress=not args.no_progress)
    end_process_group()
    if not main_process:
        return 0
    records = read_metrics(metrics_path(result.output_dir))
    if result.resumed_from is not None and result.checkpoint == result.resumed_from and result.seconds == 0:
        print(
            f"nothing trained: the run is complete at {result.checkpoint} (step {result.global_step}); a larger "
            f"--max-steps continues it: {_command()} train --output-dir {result.output_dir}{_processes()} --resume "
            "--max-steps N"
        )
        return 0
    if result.interrupted:
        print(
            f"stopped by {result.interrupted} at step {result.global_step} of {config.training.max_steps}, saved in "
            f"{result.checkpoint}; continue with: {_command()} train --output-dir {result.output_dir}{_processes()} "
            "--resume"
        )
        return 130
    print(
        f"trained to step {result.global_step} in {result.seconds:.0f} s; latest checkpoint: {result.checkpoint}\n"
        f"learnt: {learning_line(records)}\n"
        f"metrics: {metrics_path(result.output_dir)}; every completion: {completions_path(result.output_dir)}"
    )
    if config.training.profile == "cpu":
        print(
            "what a GPU adds: this small model learns to answer with a well-formed function that keeps the "
            "rules, but is too small to write one that plays well (benchmarks/RESULTS.md, Learning); on a GPU "
            "the same command trains gpt-oss-20b itself (README.md, Hardware profiles)"
        )
    elif config.training.profile == "cpu-tiny":
        print(
            "the tiny random gpt-oss learns nothing: it runs the gpt-oss code paths; --profile cpu trains a real "
            "small model, and a GPU trains gpt-oss-20b (README.md, Hardware profiles)"
        )
    if result.checkpoint:
        print(f"held-out evaluation: {_command()} evaluate --checkpoint {result.checkpoint}")
    print(
        f"continue with: {_command()} train --output-dir {result.output_dir}{_processes()} --resume --max-steps N"
    )
    return 0


LAUNCHED_PROCESSES = "HELPERS_LAUNCHED_PROCESSES"
"""Set by `train --processes N` for the processes it launches: their advice may name `--processes N`."""


def _processes() -> str:
    """` --processes N` for a command that continues a run that `--processes N` started (a resume needs as
    many); a run started by another launch (`accelerate launch --config_file`, several hosts) is continued by
    that launch again."""
    return f" --processes {world_size()}" if os.environ.get(LAUNCHED_PROCESSES) == str(world_size()) else ""


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Held-out evaluation: strategies sampled from the trained and the untrained model, and the
    baselines, on games training never played; writes a table, a plot and the strategies."""
    from dataclasses import replace

    run = run_folder_of(args.checkpoint)
    config = build_config(args, saved_run=run)
    if args.preset:
        if args.preset not in PRESETS:
            raise UsageError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
        config = replace(config, game=replace(PRESETS[args.preset], keymap=config.game.keymap))
    baselines = tuple(name.strip() for name in args.baselines.split(",") if name.strip())
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise UsageError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    if args.strategies < 1 or args.games < 1:
        raise UsageError("--strategies and --games must be at least 1")
    evaluation = EvalConfig(strategies=args.strategies, games=args.games, seed=args.seed, baselines=baselines)
    with _settings_mistakes():
        seeds = check_held_out(config, evaluation)
    folder = Path(args.output) if args.output else None
    if folder is None:
        folder = (
            heldout_folder(args.checkpoint)
            if args.checkpoint
            else Path(config.training.output_dir) / "heldout-untrained"
        )
    with _settings_mistakes():
        check_report_folder(folder)  # before the model is loaded: the evaluation's results must land
    check_loadable(config)  # before the log: a refused evaluation leaves nothing behind
    start_log(run or config.training.output_dir, args)
    start_reward_pool(config)
    model, tokenizer = load_model(config, adapter=args.checkpoint)
    game = config.game
    print(
        f"model: {config.training.model_name}"
        + (f" + {args.checkpoint}" if args.checkpoint else " (untrained)")
        + f"; {args.strategies} strategies from each model, {args.games} held-out games each "
        f"(seeds {seeds[0]}..{seeds[-1]}), {game.size}x{game.size} to {game.target}"
    )
    report = evaluate_models(
        model, tokenizer, config, evaluation, checkpoint=args.checkpoint, trained=args.checkpoint is not None
    )
    write_report(report, folder)
    print("\n" + markdown_table(summary_rows(report)) + "\n")
    best = report.best("trained" if args.checkpoint else "untrained")
    if best is not None and best.source is not None:
        print(f"best strategy ({best.name}, mean score {best.mean_score:,.0f}):\n{best.source}\n")
    print(f"strategies, report.md, report.json and heldout.png: {folder}")
    best_file = folder / BEST_FILE
    if not best_file.is_file():
        print("no sampled strategy played a game, so there is no best.py to watch (try more --strategies)")
    elif args.checkpoint and folder.resolve() == heldout_folder(args.checkpoint).resolve():
        print(f"watch the best one play: {_command()} play --checkpoint {args.checkpoint}")
    else:
        print(f"watch the best one play: {_command()} play {_play_arguments(best_file, game, seeds[0])}")
    return 0


def _play_arguments(strategy: Path, game: GameConfig, seed: int) -> str:
    """`play`'s arguments that watch `strategy` on the game it was evaluated on."""
    settings = [f"game.size={game.size}", f"game.target={game.target}"]
    if game.probability_fours != GameConfig().probability_fours:
        settings.append(f"game.probability_fours={game.probability_fours}")
    keymap = f" --keymap {game.keymap}" if isinstance(game.keymap, str) and game.keymap != "bepo" else ""
    return (
        shlex.join(["--strategy", str(strategy), "--seed", str(seed)])
        + keymap
        + "".join(f" --set {setting}" for setting in settings)
    )


def _silent(*args: Any, **kwargs: Any) -> None:
    """`print` for the processes other than the main one: they leave the console to it."""


def _command() -> str:
    """How to run this command line again: with the interpreter that runs it now."""
    return f"{sys.executable} -m helpers"


def cmd_export(args: argparse.Namespace) -> int:
    """Save a checkpoint as a LoRA adapter, a merged 16-bit model or MXFP4, and verify the export."""
    run = run_folder_of(args.checkpoint)
    config = build_config(args, saved_run=run)
    formats = list(FORMATS) if args.format == "all" else [args.format]
    if args.output and len(formats) > 1:
        raise UsageError("--output names one folder: use it with a single --format")
    check_loadable(config)  # before the log: a refused export leaves nothing behind
    start_log(run or config.training.output_dir, args)
    model, tokenizer = load_model(config, adapter=args.checkpoint)
    if args.format == "all":  # every format this model has, before any is written
        for fmt in list(formats):
            reason = format_unsupported(model, fmt)
            if reason:
                print(f"{fmt}: skipped: {reason}")
                formats.remove(fmt)
    for fmt in formats:
        output = args.output or (Path(run or config.training.output_dir) / f"export-{fmt}")
        result = export_model(model, tokenizer, config, fmt, output, verify=not args.no_verify)
        verdict = f"{result.check.verdict}: {result.check.message}" if result.check else "not verified"
        print(f"{fmt}: {result.path} ({result.seconds:.1f} s); {verdict}")
    return 0


def _read_key(stream: Any) -> str:
    """One key press: a character, or an arrow key's escape sequence ('' at the end of input)."""
    if not stream.isatty():
        char = stream.read(1)
        while char in ("\n", "\r", " "):
            char = stream.read(1)
        return char + stream.read(2) if char == "\x1b" else char
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        data = os.read(fd, 1)
        if data == b"\x1b":
            data += os.read(fd, 2)
        elif data and data[0] >= 0xC0:  # the first byte of a multi-byte UTF-8 character (é)
            data += os.read(fd, 1 if data[0] < 0xE0 else 2 if data[0] < 0xF0 else 3)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return data.decode("utf-8", "replace")


def _show(game: Any, message: str, color: bool) -> None:
    board = game.board()
    if color and sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[2J")
    print(render_ansi(board) if color else render_text(board))
    print(f"score {game.score()}  moves {game.moves}  {game.state()}  {message}", flush=True)


def _watch_keys(source: str, game_config: Any, seed: int, sandbox: Any) -> tuple[list[object], Any]:
    """Play generated code in the sandbox; returns the keys it played (`GameResult.keys`) and the result."""
    result = execute_strategy(source, from_config(game_config, seed=seed), config=sandbox)
    return list(result.keys), result


def cmd_play(args: argparse.Namespace) -> int:
    """Play 2048 in the terminal with the active keys, or watch a strategy play."""
    sections = parse_settings(args.set or [])
    if sections["training"]:
        raise UsageError(f"play takes game settings only (game.size=4), not {sorted(sections['training'])}")
    if args.checkpoint is not None:
        if args.strategy is not None:
            raise UsageError("--checkpoint plays that checkpoint's best strategy: leave out --strategy")
        args.strategy, held_out_seed = _best_of(args.checkpoint)
        run = run_folder_of(args.checkpoint)
        if run is not None:
            with _settings_mistakes():
                saved = saved_config(run).game
            sections["game"] = {**saved.__dict__, **sections["game"]}
        if args.seed is None:
            args.seed = held_out_seed
    with _settings_mistakes():
        config = make_config(
            "cpu-tiny", game=sections["game"], sandbox=sections["sandbox"], rewards=sections["rewards"]
        )
    game_config = config.game
    seed = random.randrange(1_000_000) if args.seed is None else args.seed
    if args.keymap:
        if args.keymap not in KEYMAPS:
            raise UsageError(f"unknown key map {args.keymap!r}; choose one of {', '.join(KEYMAPS)}")
        from dataclasses import replace

        game_config = replace(game_config, keymap=args.keymap)
    with _settings_mistakes():
        game = from_config(game_config, seed=seed)
    keys = ", ".join(f"{key}={direction}" for key, direction in game.keymap.items())
    color = not args.no_color
    if args.strategy is None:
        key_of = keys_by_direction(game.keymap)
        _show(game, f"keys: {keys}, arrows; q quits", color)
        while game.state() == "ongoing":
            key = _read_key(sys.stdin)
            if key in QUIT_KEYS:
                break
            key = key_of.get(ARROW_KEYS.get(key, ""), key)
            if game.direction_of(key) is None:
                _show(game, f"{key!r} is not a key here ({keys})", color)
                continue
            game.do_action(key)
            _show(game, "", color)
        return 0
    if args.strategy in BASELINES:
        strategy = BASELINES[args.strategy](game.keymap, seed)

        def shown(key: object, moved: bool) -> None:
            _show(game, args.strategy, color)
            time.sleep(args.delay)

        moves = (strategy(game.board()) for _ in itertools.count())
        play_keys(game, moves, config.sandbox.stall_moves, on_move=shown)
        return 0
    path = Path(args.strategy)
    if not path.is_file():
        raise UsageError(
            f"--strategy {args.strategy!r} is neither a file nor a baseline ({', '.join(BASELINES)})"
        )
    text = path.read_text(encoding="utf-8")
    source = extract_function(text) or text
    played, result = _watch_keys(source, game_config, seed, config.sandbox)
    for move in played:
        game.do_action(move)
        _show(game, f"{path.name}: {move!r}", color)
        time.sleep(args.delay)
    reason = f" ({result.error})" if result.error else ""
    print(
        f"{result.state}: score {result.score}, largest tile {result.max_tile}, {result.steps} keys, seed {seed}{reason}"
    )
    return 0


def _best_of(checkpoint: str) -> tuple[str, int | None]:
    """The held-out evaluation's best strategy file of a checkpoint, and the first held-out seed."""
    import json

    folder = heldout_folder(checkpoint)
    best = folder / BEST_FILE
    if not best.is_file():
        raise UsageError(
            f"{checkpoint} has no held-out evaluation with a strategy yet ({best} is missing): "
            f"run {_command()} evaluate --checkpoint {checkpoint}"
        )
    try:
        seeds = json.loads((folder / REPORT_FILE).read_text())["seeds"]
    except (OSError, ValueError, KeyError):
        seeds = []
    return str(best), seeds[0] if seeds else None


# --- the parser ------------------------------------------------------------------------------------


def _dest(section: str, name: str) -> str:
    """The argparse destination of a setting's flag: the name for training, `section.name` otherwise."""
    return name if section == "training" else f"{section}.{name}"


def _metavar(value: Any) -> str:
    if isinstance(value, bool):
        return "true|false"
    if isinstance(value, tuple):
        return "A,B,..."
    return {int: "N", float: "X"}.get(type(value), "TEXT")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every setting, from the configuration dataclasses; each field's docstring is its help.

    Training settings are `--lora-rank 8`; the other sections' `--game.size 4`, `--rewards.graded true`.
    Values are checked as `make_config` checks them, with the same messages.
    """
    for section, cls in CONFIG_SECTIONS.items():
        docs, defaults = field_docs(cls), cls()
        title = (
            "training settings (defaults: the profile's, or a resumed run's own)"
            if section == "training"
            else f"{section} settings"
        )
        group = parser.add_argument_group(title)
        for item in fields(cls):
            if section == "training" and item.name == "profile":
                continue
            default = getattr(defaults, item.name)
            shown = ",".join(default) if isinstance(default, tuple) else default
            flag = item.name.replace("_", "-")
            group.add_argument(
                f"--{flag}" if section == "training" else f"--{section}.{flag}",
                dest=_dest(section, item.name),
                metavar=_metavar(default),
                help=(
                    docs.get(item.name, "") + ("" if section == "training" else f" (default {shown})")
                ).replace("%", "%%"),
            )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="hardware profile (default: the run's saved one, else $GPT_OSS_2048_PROFILE, else detected)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting: lora_rank=8, game.size=4, rewards.graded=true (repeatable)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, saying a mistake in one line instead of the whole usage (every setting is a flag: dozens of
    lines) and pointing at `--help`; a flag spelt with underscores, as `--set` spells settings, gets its hyphens."""

    def error(self, message: str) -> NoReturn:
        unknown = [arg.split("=")[0] for arg in message.partition("unrecognized arguments: ")[2].split()]
        spelt = [
            arg.replace("_", "-")
            for arg in unknown
            if arg.startswith("--") and "_" in arg and arg.replace("_", "-") in self._option_string_actions
        ]
        hint = f" (flags are spelt with hyphens: {', '.join(spelt)})" if spelt else ""
        self.exit(2, f"error: {message}{hint}; see {self.prog} --help\n")


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parse_args`, with arguments no command knows refused by that command's parser (its `--help` lists them)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser() -> argparse.ArgumentParser:
    """The `python -m helpers` argument parser, one sub-command per task."""
    parser = _Parser(
        prog="python -m helpers",
        description="gpt-oss-20b learns to write 2048 strategies with GRPO: train, evaluate, export, play.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train with GRPO (resumable)", description=cmd_train.__doc__)
    _add_config_options(train)
    train.add_argument(
        "--preset",
        dest="train_preset",
        choices=sorted(GAME_PRESETS),
        help="train on another game of helpers.config.GAME_PRESETS, e.g. 4x4-512 (the graded reward comes with it)",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its latest checkpoint"
    )
    train.add_argument(
        "--no-progress", action="store_true", help="no progress bar (the log still gets every step)"
    )
    train.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="train in N processes, one per GPU, through accelerate launch (each generates its share)",
    )
    _add_setting_flags(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a checkpoint's strategies against the baselines",
        description=cmd_evaluate.__doc__,
    )
    _add_config_options(evaluate)
    defaults = EvalConfig()
    evaluate.add_argument(
        "--checkpoint", help="a checkpoint-N folder or lora export (default: only the untrained model)"
    )
    evaluate.add_argument(
        "--strategies",
        type=int,
        default=defaults.strategies,
        help=f"strategies to sample from each model (default {defaults.strategies})",
    )
    evaluate.add_argument(
        "--games",
        type=int,
        default=defaults.games,
        help=f"held-out games per strategy (default {defaults.games})",
    )
    evaluate.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help=f"seed of the first held-out game; refused if training played it (default {defaults.seed})",
    )
    evaluate.add_argument("--preset", help="another game from helpers.config.GAME_PRESETS, e.g. 4x4-512")
    evaluate.add_argument(
        "--baselines",
        default=",".join(defaults.baselines),
        help=f"comma-separated (default {','.join(defaults.baselines)})",
    )
    evaluate.add_argument("--output", help="folder for the report (default <run>/heldout-<checkpoint>)")
    evaluate.set_defaults(handler=cmd_evaluate)

    export = commands.add_parser(
        "export", help="save and verify a LoRA / merged 16-bit / MXFP4 model", description=cmd_export.__doc__
    )
    _add_config_options(export)
    export.add_argument("--checkpoint", required=True, help="a checkpoint-N folder (or a lora export)")
    export.add_argument(
        "--format", default="lora", choices=["lora", "merged_16bit", "mxfp4", "all"], help="(default lora)"
    )
    export.add_argument("--output", help="folder to write (default <run>/export-<format>)")
    export.add_argument(
        "--no-verify", action="store_true", help="skip reloading the export to check the trained weights"
    )
    export.set_defaults(handler=cmd_export)

    play = commands.add_parser(
        "play", help="play 2048 in the terminal, or watch a strategy", description=cmd_play.__doc__
    )
    play.add_argument(
        "--strategy", help="a baseline (random, greedy, fixed-order) or a file with a def strategy(board)"
    )
    play.add_argument(
        "--checkpoint",
        help="watch the best strategy of this checkpoint's held-out evaluation (run evaluate first)",
    )
    play.add_argument("--keymap", help="bepo (é/u/a/i, the default) or wasd")
    play.add_argument("--seed", type=int, default=None, help="seed of the game (default: random)")
    play.add_argument("--delay", type=float, default=0.1, help="seconds between a watched strategy's moves")
    play.add_argument("--no-color", action="store_true", help="plain text board")
    play.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="game settings: game.size=4, game.target=512"
    )
    play.set_defaults(handler=cmd_play)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 1 failed, 2 a usage or setup mistake, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(build_parser(), argv)
    args.argv = argv
    console, stdout = _console_handler(), sys.stdout
    terminate = _terminate_as_interrupt()
    try:
        return args.handler(args)
    except ExportVerificationError as error:  # before ExportError, its base: a result, not a mistake
        _log_traceback()
        print(f"export check failed: {error}", file=sys.stderr)
        return 1
    except (UsageError, ModelLoadError, RunFolderError, ConfigurationError, ExportError) as error:
        _log_traceback()
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _log_traceback()
        print("\n" + _after_interruption(args), file=sys.stderr)
        return 130
    except Exception:
        _log_traceback()
        raise
    finally:
        if terminate is not None:
            signal.signal(signal.SIGTERM, terminate)
        logging.getLogger("helpers").removeHandler(console)
        _stop_logs(stdout)


def _terminate_as_interrupt() -> Any:
    """SIGTERM (docker stop, a batch scheduler) ends a command as Ctrl-C does: with its message and its logs
    (training first saves the step under way). Returns the handler it replaced, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(number: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _after_interruption(args: argparse.Namespace) -> str:
    """What an interrupted command says: for training, whether a checkpoint is there to resume from."""
    folder = getattr(args, "run_folder", None)
    if args.command != "train" or folder is None:
        return "interrupted"
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        return (
            f"interrupted before the first checkpoint: nothing to resume in {folder}; the same command without "
            "--resume starts again (the logs are kept)"
        )
    return (
        f"interrupted; continue from {checkpoint.name} with: {_command()} train --output-dir {folder}{_processes()} "
        "--resume"
    )


def _log_traceback() -> None:
    """Keep the full traceback in the command's log file, where the console shows one line."""
    for file, _ in _open_logs:
        file.write(traceback.format_exc())
        file.flush()
