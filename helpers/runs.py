"""A run's folder: its saved configuration, what may change on resume, its checkpoints, its model card.

`prepare_run_folder(config, resume)` checks the output folder before training: a fresh run refuses a
folder that holds checkpoints, a resume needs one and the same settings (apart from
`RESUMABLE_CHANGES`), and the run's configuration is saved as `run_config.json`. `saved_config` gives
a resume exactly the run's settings; `write_model_card` writes the run's README.md. `run_folder_lock`
keeps a second training out of a folder while one writes to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from helpers.config import (
    PROFILES,
    Config,
    GameConfig,
    RewardConfig,
    SandboxConfig,
    TrainingConfig,
    as_dict,
    make_config,
)
from helpers.metrics import (
    completions_path,
    learning_line,
    metrics_path,
    read_metrics,
    truncate_metrics,
)
from helpers.prompts import build_prompt

RUN_CONFIG_FILE = "run_config.json"
"""The run's configuration, saved in its output folder and compared on resume."""

RESUMABLE_CHANGES = frozenset(
    {
        "training.max_steps",
        "training.save_steps",
        "training.logging_steps",
        "training.output_dir",
        "training.log_completions_every",
        "training.report_to",
        "training.compile_cache",
        "training.logprob_recompute",
        "training.logit_chunk_multiplier",
        "sandbox.max_workers",
        "profile_reason",
    }
)
"""Settings a resumed run may change: how long and how often, never what is trained or rewarded."""

CHECKPOINT_PREFIX = "checkpoint-"
"""transformers names checkpoint folders `checkpoint-<step>`."""

LOCK_FILE = ".training.lock"
"""Held (`flock`) by the training that writes to a run folder, with its process id, host and start time."""

log = logging.getLogger(__name__)


def process_rank() -> int:
    """This process's rank among the training processes (`accelerate launch` sets RANK); 0 alone.

    A process is alone when WORLD_SIZE says so or is not set, whatever a stray RANK says.
    """
    if world_size() == 1:
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_process() -> bool:
    """Whether this process writes the run's folder, logs and console lines (rank 0, or the only one)."""
    return process_rank() == 0


def _processes_from(variable: str) -> int:
    """A count of processes that the launcher set in `variable`; 1 when unset, empty or not a number."""
    try:
        return max(1, int(os.environ.get(variable) or 1))
    except ValueError:
        return 1


def world_size() -> int:
    """Training processes in all (WORLD_SIZE), 1 when not launched by accelerate or torchrun."""
    return _processes_from("WORLD_SIZE")


def local_processes() -> int:
    """Training processes on this machine (LOCAL_WORLD_SIZE), 1 when not launched by accelerate."""
    return _processes_from("LOCAL_WORLD_SIZE")


def rank_console(output_dir: str | os.PathLike, wait_s: float = 30.0) -> Path | None:
    """In a process of rank N > 0, send standard output to `<output_dir>/console-rank<N>.log`, appended.

    Every process of a several-GPU run prints the same banners (Unsloth, about 18 lines each); rank 0 speaks
    for the run, so the others' standard output goes to a file of their own, where nothing is lost. Their
    standard error (warnings, errors, tracebacks) still reaches the console. Called once the run folder's
    checks have passed; the folder is rank 0's to make, so this waits up to `wait_s` for it and never makes it.
    Returns the file; None in rank 0, or where the file cannot be used (a warning says so, and the output
    stays on the console).
    """
    rank = process_rank()
    if rank == 0:
        return None
    folder = Path(output_dir)
    deadline = time.monotonic() + wait_s
    while not folder.is_dir():
        if time.monotonic() > deadline:
            log.warning("rank %d prints on the console: %s was not made within %g s", rank, folder, wait_s)
            return None
        time.sleep(0.2)
    path = folder / f"console-rank{rank}.log"
    descriptor = None
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if sys.stdout is not None:
            sys.stdout.flush()
        if descriptor != 1:  # descriptor 1 itself, so that what C libraries print goes there too
            os.dup2(descriptor, 1)
            os.close(descriptor)
    except (OSError, ValueError) as error:
        if descriptor is not None and descriptor != 1:
            os.close(descriptor)
        log.warning("rank %d prints on the console: %s cannot be used (%s)", rank, path, error)
        return None
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"=== {started} rank {rank} of {world_size()}: this process's standard output", flush=True)
    return path


def end_process_group() -> None:
    """Close the group of training processes that accelerate opened, as torch asks before they exit."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


class RunFolderError(RuntimeError):
    """The output folder cannot take this run (an incompatible run, nothing to resume, ...)."""


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = list(value) if isinstance(value, (list, tuple)) else value
    return flat


def _field_defaults() -> dict[str, Any]:
    """Every setting's dataclass default, flattened like `_flatten` (`training.loss_type`, ...)."""

    sections: dict[str, Any] = {
        "game": GameConfig(),
        "sandbox": SandboxConfig(),
        "rewards": RewardConfig(),
        "training": TrainingConfig(),
    }
    return _flatten(json.loads(json.dumps({name: asdict(value) for name, value in sections.items()})))


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Settings that differ between two saved configurations and may not change on resume.

    A setting the saved run does not name was added to the project after the run started: the run
    had its default, so only a value other than the default is a difference.
    """
    old, new = _flatten(saved), _flatten(json.loads(json.dumps(current)))
    defaults = _field_defaults()
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RESUMABLE_CHANGES and old.get(key, defaults.get(key)) != new.get(key)
    ]


COMPLETE_MARK = "trainer_state.json"
"""The file a checkpoint gets last (after the weights, optimiser and random states): without it, the save
was interrupted and the folder cannot be resumed from."""


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The training step a `checkpoint-N` folder holds: N."""
    return int(Path(checkpoint).name[len(CHECKPOINT_PREFIX) :])


def check_output_folder(config: Config) -> None:
    """Raise `RunFolderError` when the run's output folder is a file (before any log is written there)."""
    if not str(config.training.output_dir).strip():
        raise RunFolderError(
            "the output folder is empty: name one with --output-dir (output_dir= in make_config)"
        )
    folder = Path(config.training.output_dir)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            f"the output folder {folder} is a file: choose another --output-dir (output_dir= in make_config)"
        )


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Every `checkpoint-N` folder in `output_dir`, complete or not, by step."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    steps = [
        (checkpoint_step(path), path)
        for path in folder.iterdir()
        if path.is_dir()
        and path.name.startswith(CHECKPOINT_PREFIX)
        and path.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return [path for _, path in sorted(steps)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint folder with the highest step in `output_dir`, or None.

    A folder whose save was interrupted (no `COMPLETE_MARK`) is passed over: `incomplete_checkpoints`.
    """
    complete = [path for path in checkpoints(output_dir) if (path / COMPLETE_MARK).is_file()]
    return complete[-1] if complete else None


def incomplete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders whose save was interrupted (an interruption while saving leaves one)."""
    return [path for path in checkpoints(output_dir) if not (path / COMPLETE_MARK).is_file()]


def saved_config(
    run_dir: str | os.PathLike,
    game: dict[str, Any] | None = None,
    sandbox: dict[str, Any] | None = None,
    rewards: dict[str, Any] | None = None,
    **training: Any,
) -> Config:
    """The configuration a run in `run_dir` was started with, plus overrides (as `make_config` takes them).

    This is how a resume gets exactly the run's settings without repeating them on the command line.
    """

    path = Path(run_dir) / RUN_CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunFolderError(nothing_to_resume(run_dir))
    if not path.is_file():
        raise RunFolderError(f"{run_dir} holds no {RUN_CONFIG_FILE}: it is not the output folder of a run")
    saved = json.loads(path.read_text())

    def plain(section: dict[str, Any]) -> dict[str, Any]:
        return {key: tuple(value) if isinstance(value, list) else value for key, value in section.items()}

    settings = plain(saved["training"])
    profile = settings.pop("profile")
    config = make_config(
        profile,
        game={**plain(saved["game"]), **(game or {})},
        sandbox={**plain(saved["sandbox"]), **(sandbox or {})},
        rewards={**plain(saved["rewards"]), **(rewards or {})},
        **{**settings, **training},
    )
    return replace(config, profile_reason=f"the settings saved with the run in {run_dir}")


EARLIER_FOLDERS = {"h200": ("h100",)}
"""Profiles' folders where another profile's runs went before it existed: H200s trained into outputs/h100."""


def earlier_run(folder: str | os.PathLike) -> tuple[Path, Path] | None:
    """(folder, latest checkpoint) of a run an earlier version put where this profile's folder now stands.

    `folder` is a profile's default (`outputs/<profile>`): GPU runs went to `outputs/` before each profile had
    its own folder, and H200 runs to `outputs/h100` before the `h200` profile. None when neither holds one.
    """
    folder = Path(folder)
    if folder.name not in PROFILES:
        return None
    for before in (folder.parent, *(folder.parent / name for name in EARLIER_FOLDERS.get(folder.name, ()))):
        checkpoint = latest_checkpoint(before) if (before / RUN_CONFIG_FILE).is_file() else None
        if checkpoint is not None:
            return before, checkpoint
    return None


def nothing_to_resume(folder: str | os.PathLike) -> str:
    """Why `folder` holds no checkpoint a resume can start from, in words."""
    folder = Path(folder)
    if not folder.is_dir():
        earlier = earlier_run(folder)
        if earlier is None:
            return f"nothing to resume: {folder} does not exist"
        return (
            f"nothing to resume: {folder} does not exist; an earlier run is in {earlier[0]} (latest: "
            f"{earlier[1].name}): resume it with --output-dir {earlier[0]} --resume"
        )
    broken = ", ".join(path.name for path in incomplete_checkpoints(folder))
    if broken:
        return f"nothing to resume in {folder}: its only checkpoints were left incomplete ({broken})"
    return f"nothing to resume in {folder}: it holds no {CHECKPOINT_PREFIX}* folder"


def prepare_run_folder(config: Config, resume: bool | str, write: bool = True) -> Path | None:
    """Check the output folder for this run and save its configuration; returns the checkpoint to resume.

    A fresh run refuses a folder that already holds checkpoints; a resumed run needs a checkpoint and
    the same settings (apart from `RESUMABLE_CHANGES`). Raises `RunFolderError` otherwise.
    `resume="auto"` resumes when the folder holds a checkpoint and starts afresh when it does not.
    `write=False` (every process of several but the main one) checks and changes nothing.
    """
    check_output_folder(config)
    folder = Path(config.training.output_dir)
    saved_path = folder / RUN_CONFIG_FILE
    checkpoint = latest_checkpoint(folder)
    for broken in incomplete_checkpoints(folder):
        log.warning(
            "%s was left incomplete (its save was interrupted): passed over%s",
            broken.name,
            f"; the run continues from {checkpoint.name}" if checkpoint else "",
        )
    current = as_dict(config)
    if resume == "auto":
        resume = checkpoint is not None
    if resume:
        if checkpoint is None:
            raise RunFolderError(nothing_to_resume(folder))
        if not saved_path.is_file():
            raise RunFolderError(
                f"{folder} holds checkpoints but no {RUN_CONFIG_FILE}, so a resume cannot check that its settings "
                "match these; start a new run in another output folder."
            )
        differences = config_differences(json.loads(saved_path.read_text()), current)
        if differences:
            raise RunFolderError(
                f"{folder} holds a run with other settings, which a resume would mix with these:\n  "
                + "\n  ".join(differences)
                + "\nResume with the run's own settings, or start a new run in another output folder."
            )
        step = checkpoint_step(checkpoint)
        if step < config.training.max_steps:  # a complete run is only read (the notebook takes its adapter)
            check_processes(checkpoint, world_size())
        # every process's completions log too, so that no step is logged twice when it is trained again
        ranks = sorted(folder.glob(completions_path(folder, "*").name))
        for path in (metrics_path(folder), completions_path(folder), *ranks):
            if write:
                truncate_metrics(path, step)
    else:
        if checkpoint is not None:
            raise RunFolderError(
                f"{folder} already holds a run (latest: {checkpoint.name}). To continue it: --resume on the "
                "command line, resume=True in Python. For a new run, another output folder: --output-dir, or "
                "output_dir= in make_config."
            )
        earlier = earlier_run(folder) if folder.name == config.training.profile else None
        if write and earlier is not None:
            log.warning(
                "an earlier run is in %s (latest: %s), where an earlier version put this profile's runs; this "
                "starts a new run in %s. To continue that one instead: --output-dir %s --resume",
                earlier[0],
                earlier[1].name,
                folder,
                earlier[0],
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for old in (metrics_path(folder), completions_path(folder)):
            if write and old.is_file():
                # A run that died before its first checkpoint: keep its logs beside, never delete them.
                kept = old.with_name(f"{old.stem}-before-{stamp}{old.suffix}")
                old.replace(kept)
                log.warning("a log without checkpoints was in %s: kept as %s", folder, kept.name)
    if not write:
        return checkpoint
    if resume and checkpoint is not None and checkpoint_step(checkpoint) >= config.training.max_steps:
        return checkpoint  # nothing will train: the run's saved settings (its max_steps) stay the truth
    folder.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    return checkpoint


_held_locks: dict[tuple[Path, int], tuple[int | None, int]] = {}
"""The run folders this process holds, by folder and thread: the lock file's descriptor (None where the file
system has no locks) and how many holders nest."""

NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
"""What `flock` answers on a file system without locks (Lustre's default, NFS without lockd, some FUSE)."""


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold `folder` for this training; raise `RunFolderError` while another training holds it.

    Two trainings in one folder would write their checkpoints over each other's and mix their logs. The
    lock is the kernel's (`flock`), so a process that dies gives it back; on a file system without locks the
    training goes on with a warning. Nested holds in one thread (the command line's, then `train`'s) share
    it; another thread of the same process is refused like another process. The folders this creates are
    removed again if they are left holding only the lock file (a run refused after all).
    """
    folder = Path(folder).absolute()
    key = (folder.resolve(), threading.get_ident())
    if key in _held_locks:
        held, depth = _held_locks[key]
        _held_locks[key] = (held, depth + 1)
        try:
            yield
        finally:
            held, depth = _held_locks[key]
            _held_locks[key] = (held, depth - 1)
        return
    created = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    opened = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    descriptor: int | None = opened
    try:
        try:
            fcntl.flock(opened, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(opened, 200).decode("utf-8", "replace").strip()
            raise RunFolderError(
                f"{folder} is in use by another training ({holder or 'a process starting up'}): two trainings "
                "in one folder would write over each other's checkpoints. Wait for it to end, or train into "
                "another output folder (--output-dir, or output_dir= in make_config)."
            ) from None
        except OSError as error:
            if error.errno not in NO_LOCKS:
                raise
            log.warning(
                "%s has no file locks (%s): a second training in it would not be refused", folder, error
            )
            descriptor = None
            os.close(opened)
        _held_locks[key] = (descriptor, 1)
        if descriptor is not None:
            # who holds it, for a refusal's words; a full disk here changes nothing
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
                os.write(
                    descriptor,
                    f"process {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode(),
                )
    except BaseException:
        _held_locks.pop(key, None)
        if descriptor is not None:
            os.close(descriptor)
        _remove_if_only_the_lock(created)
        raise
    try:
        yield
    finally:
        held, depth = _held_locks[key]
        if depth > 1:
            _held_locks[key] = (held, depth - 1)
        else:
            del _held_locks[key]
            try:
                _remove_if_only_the_lock(created)
            finally:
                if held is not None:
                    os.close(held)  # after the removal: no other process takes a lock that is going away


def _remove_if_only_the_lock(created: list[Path]) -> None:
    """Remove the folders a lock created (deepest first) while they hold nothing but the lock file."""
    for folder in created:
        with contextlib.suppress(OSError):
            if {entry.name for entry in folder.iterdir()} <= {LOCK_FILE}:
                (folder / LOCK_FILE).unlink(missing_ok=True)
                folder.rmdir()


def checkpoint_processes(checkpoint: str | os.PathLike) -> int | None:
    """How many processes trained `checkpoint`, from the random states transformers saves in it (one
    `rng_state.pth` for one process, `rng_state_<rank>.pth` for each of several); None when it holds none."""
    checkpoint = Path(checkpoint)
    ranks = [
        int(match[1])
        for path in checkpoint.glob("rng_state_*.pth")
        if (match := re.fullmatch(r"rng_state_(\d+)\.pth", path.name))
    ]
    if ranks:
        return max(ranks) + 1
    return 1 if (checkpoint / "rng_state.pth").is_file() else None


def check_processes(checkpoint: str | os.PathLike, processes: int) -> None:
    """Raise `RunFolderError` when a resume from `checkpoint` would run in another number of processes.

    The completions a step trains on are per process, and each process's random state is restored from its
    own file: in another number of processes the run would change its batch and sample afresh.
    """
    made = checkpoint_processes(checkpoint)
    if made is not None and made != processes:

        def count(n: int) -> str:
            return f"{n} process{'es' if n > 1 else ''}"

        raise RunFolderError(
            f"{Path(checkpoint).name} was trained in {count(made)} and this resume would run in {count(processes)}: "
            f"resume it in {count(made)} (--processes {made} on the command line, or the accelerate launch it was "
            "started with; its steps train on the completions of every process, and each process's random state "
            "is restored from its own file), or start a new run in another output folder."
        )


def write_model_card(config: Config, step: int) -> Path:
    """`<output_dir>/README.md`: what was trained, on what task, with which settings, and where things are.

    Written at every checkpoint, over the card TRL writes (which names no base model).
    """

    training, game, rewards = config.training, config.game, config.rewards
    folder = Path(training.output_dir)
    functions = ["function_works", "no_cheating", "strategy_succeeds"] + (
        ["strategy_graded"] if rewards.graded else []
    )
    latest = latest_checkpoint(folder)
    lines = [
        "---",
        f"base_model: {training.model_name}",
        "library_name: peft",
        "tags: [grpo, lora, trl, 2048, code-generation]",
        "---",
        "",
        f"# {training.model_name} + LoRA: writing 2048 strategies, trained with GRPO",
        "",
        f"A LoRA adapter on **{training.model_name}** (profile `{training.profile}`), trained with GRPO (TRL) to "
        f"answer the prompt below with a Python function `strategy(board)` that plays 2048 on a "
        f"{game.size}x{game.size} board to {game.target}, keys `{game.keymap}`.",
        "",
        f"- Steps: {step} of {training.max_steps}; latest checkpoint: `{latest.name if latest else 'none yet'}`.",
        f"- Rewards: {', '.join(f'`{name}`' for name in functions)} (values in `run_config.json`, section rewards); "
        f"{rewards.games_per_completion} seeded games per completion, new games every step.",
        f"- LoRA r={training.lora_rank}, alpha {training.lora_alpha} on {', '.join(training.target_modules)}; "
        f"lr {training.learning_rate} {training.lr_scheduler_type}; {training.num_generations} generations of at most "
        f"{training.max_completion_length} tokens; loss {training.loss_type}, beta {training.beta}, "
        f"reward scaling {training.scale_rewards}.",
        f"- Learnt so far: {learning_line(read_metrics(metrics_path(folder)))}.",
        "- Every setting: `run_config.json`; every step: `metrics.jsonl`; every completion: `completions.jsonl`.",
        "- Judge it on games training never played: `python -m helpers evaluate --checkpoint <checkpoint>`.",
        "",
        "## The prompt",
        "",
        "```",
        build_prompt(game, config.sandbox.allowed_imports),
        "```",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
