"""GRPO training: the dataset, TRL's configuration from a profile, the trainer, its logs, and resume.

`train(config)` runs a whole training: it starts the reward worker pool (before CUDA initialises),
loads the model unless one is given, checks the output folder, and calls TRL's `GRPOTrainer` with
the project's reward functions. Every logged step is appended to `<output_dir>/metrics.jsonl`; a
notebook shows a live plot redrawn in place, a console a progress bar; a checkpoint is written every
`save_steps` and at the end. `train(config, resume=True)` continues from the latest checkpoint, and
only with the same settings (the run's configuration is saved as `run_config.json` beside the
checkpoints): changing the model, LoRA, rewards or game halfway would silently mix two experiments.

`generate_strategies(model, tokenizer, config, n)` asks the model for `n` strategies and returns
the completions with the function extracted from each: the before/after picture of training.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from helpers import sandbox
from helpers.config import (
    Config,
)
from helpers.metrics import (
    append_metrics,
    metrics_path,
    plot_metrics,
    read_metrics,
)
from helpers.model import (
    check_adapter,
    check_loadable,
    first_step_note,
    import_unsloth_if_used,
    input_device,
    load_adapter_into,
    load_model,
    set_trained_steps,
)
from helpers.prompts import chat_messages
from helpers.rewards import reward_functions
from helpers.runs import (
    check_output_folder,
    checkpoint_step,
    is_main_process,
    latest_checkpoint,
    local_processes,
    prepare_run_folder,
    rank_console,
    run_folder_lock,
    world_size,
    write_model_card,
)
from helpers.upstream import install_logprob_fallback

log = logging.getLogger(__name__)


class ConfigurationError(ValueError):
    """The training settings cannot work together; the message says which and why."""


@dataclass
class TrainResult:
    """What a call to `train` did."""

    output_dir: str
    """The run's folder: checkpoints, metrics.jsonl, run_config.json."""
    global_step: int
    """Optimiser steps done in total (including those before a resume)."""
    checkpoint: str | None
    """The latest checkpoint folder, or None if none was written."""
    resumed_from: str | None
    """The checkpoint this call continued from, or None for a fresh run."""
    seconds: float
    """Wall-clock time of this call's training."""
    last_metrics: dict[str, Any] = field(default_factory=dict)
    """The last logged step's metrics."""
    model_holds: str = ""
    """What the model passed in (or loaded) holds now, in words: a run's latest adapter, never an older one."""
    interrupted: str | None = None
    """The signal that stopped the run early (`SIGINT`, `SIGTERM`) after it saved the step under way, or None."""


@dataclass
class GeneratedStrategy:
    """One completion of the task prompt and the strategy extracted from it."""

    text: str
    """The completion as the reward functions see it (special tokens removed)."""
    source: str | None
    """The extracted `def strategy(board)` source, or None when there is none."""


# --- dataset and configuration -------------------------------------------------------------------


def build_dataset(config: Config) -> Any:
    """The GRPO dataset: the task prompt as a chat, repeated, with the reasoning-effort column.

    Unsloth's trainer passes a column the chat template mentions (`reasoning_effort`) to the template
    row by row; plain TRL gets the same value through `chat_template_kwargs`.
    """
    from datasets import Dataset

    row = {"prompt": chat_messages(config.game), "reasoning_effort": config.training.reasoning_effort}
    return Dataset.from_list([row] * config.training.dataset_size)


def check_game(config: Config) -> None:
    """Raise `ConfigurationError` when the game settings make no game (a key map that does not exist, ...):
    before a run's folder is touched, not at the first reward."""
    from helpers.game import from_config

    try:
        from_config(config.game, seed=0)
    except ValueError as error:
        raise ConfigurationError(f"game settings: {error}") from None


BNB_OPTIMISERS = frozenset(
    {
        "adamw_bnb_8bit",
        "adamw_8bit",
        "paged_adamw_32bit",
        "paged_adamw_8bit",
        "ademamix",
        "ademamix_8bit",
        "paged_ademamix_32bit",
        "paged_ademamix_8bit",
        "lion_32bit",
        "lion_8bit",
        "paged_lion_32bit",
        "paged_lion_8bit",
        "rmsprop_bnb",
        "rmsprop_bnb_8bit",
        "rmsprop_bnb_32bit",
    }
)
"""transformers' optimisers that come from bitsandbytes (importing transformers to ask would come before
Unsloth, which must be first; tests/test_training.py checks the two agree)."""


def check_optimiser(config: Config) -> None:
    """Raise `ConfigurationError` before anything loads when the optimiser's package is missing."""
    optim = config.training.optim
    if optim in BNB_OPTIMISERS and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigurationError(
            f"training.optim {optim!r} comes from bitsandbytes, which is not installed here (it needs a CUDA GPU): "
            "--optim adamw_torch, or install bitsandbytes"
        )


def check_trainable(config: Config, processes: int | None = None, loading: bool = True) -> None:
    """Everything that refuses a training before anything is written (the command line runs it before its log
    starts, `train` before it takes the run folder): the output folder, the game, the batch sizes for
    `processes` (this run's, by default), the model (when `loading` it) and the optimiser's package."""
    check_output_folder(config)
    check_game(config)
    check_batch_sizes(config, world_size() if processes is None else processes)
    if loading:
        check_loadable(config)
    check_optimiser(config)


def check_batch_sizes(config: Config, num_processes: int = 1) -> int:
    """The generation batch (completions per optimiser step); raises if TRL would refuse it.

    TRL generates `per_device_train_batch_size * gradient_accumulation_steps * processes` completions
    per step, in groups of `num_generations` completions of the same prompt, so the first must be a
    multiple of the second.
    """
    training = config.training
    batch = training.per_device_train_batch_size * training.gradient_accumulation_steps * num_processes
    if training.num_generations < 2:
        raise ConfigurationError(
            f"num_generations={training.num_generations}: GRPO compares completions within a group, so it needs at least 2"
        )
    if batch % training.num_generations:
        raise ConfigurationError(
            f"per_device_train_batch_size ({training.per_device_train_batch_size}) x gradient_accumulation_steps "
            f"({training.gradient_accumulation_steps}) = {batch} completions per step is not a multiple of "
            f"num_generations ({training.num_generations}); change one of them"
        )
    return batch


TRACKING_PROJECT = "gpt-oss-2048"
"""The project name runs are filed under in trackio and Weights & Biases."""


def trackers(config: Config) -> list[str] | str:
    """TRL's `report_to`: the trackers `TrainingConfig.report_to` names, or "none"."""
    names = [name.strip() for name in config.training.report_to.split(",") if name.strip()]
    return "none" if names == ["none"] else names


def grpo_config(config: Config, gpu: bool | None = None) -> Any:
    """TRL's `GRPOConfig` for a run, built from the profile's `TrainingConfig`."""
    import torch
    from trl import GRPOConfig

    training = config.training
    check_batch_sizes(config)
    gpu = torch.cuda.is_available() if gpu is None else gpu
    bf16 = gpu and torch.cuda.is_bf16_supported()
    args = GRPOConfig(
        output_dir=training.output_dir,
        per_device_train_batch_size=training.per_device_train_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        num_generations=training.num_generations,
        max_completion_length=training.max_completion_length,
        temperature=training.temperature,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.lr_scheduler_type,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio,
        optim=training.optim,
        max_steps=training.max_steps,
        save_strategy="steps",
        save_steps=training.save_steps,
        logging_steps=training.logging_steps,
        seed=training.seed,
        chat_template_kwargs={"reasoning_effort": training.reasoning_effort},
        loss_type=training.loss_type,
        beta=training.beta,
        scale_rewards=training.scale_rewards,
        mask_truncated_completions=training.mask_truncated_completions,
        num_iterations=training.num_iterations,
        steps_per_generation=training.steps_per_generation or None,
        gradient_checkpointing=training.gradient_checkpointing != "false",
        bf16=bf16,
        fp16=gpu and not bf16,
        use_cpu=not gpu,
        report_to=trackers(config),
        project=TRACKING_PROJECT,
        run_name=Path(training.output_dir).name,
        trackio_static_space_id=False,  # local only: never sync to the Hub on its own
        disable_tqdm=True,
    )
    if training.logit_chunk_multiplier:  # Unsloth reads it from the arguments at each loss computation
        args.unsloth_logit_chunk_multiplier = training.logit_chunk_multiplier
    return args


# --- callbacks -------------------------------------------------------------------------------------


def in_notebook() -> bool:
    """Whether this runs inside a Jupyter kernel (where the live plot can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


def _callbacks(config: Config, live_plot: bool, progress: bool) -> list[Any]:
    """The trainer callbacks: the metrics log, the model card, the live plot and the progress bar on request,
    and the learning rate's mend after a resume."""
    from transformers import TrainerCallback

    path = metrics_path(config.training.output_dir)

    class MetricsLog(TrainerCallback):
        """Append every logged step to metrics.jsonl and a one-line summary to the log."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            record = {"step": state.global_step, "time": round(time.time(), 3), **logs}
            append_metrics(path, record)
            rewards = ", ".join(
                f"{key.split('/')[1]} {value:.2f}"
                for key, value in logs.items()
                if key.startswith("rewards/") and key.endswith("/mean")
            )
            log.info(
                "step %d/%d reward %.3f (%s)",
                state.global_step,
                state.max_steps,
                logs.get("reward", 0.0),
                rewards,
            )

    class LivePlot(TrainerCallback):
        """Redraw the metrics figure in place in the notebook after every logged step."""

        def __init__(self):
            self.figure = None
            self.handle = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            import matplotlib.pyplot as plt
            from IPython.display import display

            self.figure = plot_metrics(read_metrics(path), self.figure)
            if self.handle is None:
                self.handle = display(self.figure, display_id=True)
                plt.close(self.figure)
            else:
                self.handle.update(self.figure)

    class ProgressBar(TrainerCallback):
        """A tqdm bar over the optimiser steps, with the latest mean reward."""

        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="GRPO", unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "reward" in logs:
                self.bar.set_postfix(reward=f"{logs['reward']:.2f}")

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    class ModelCard(TrainerCallback):
        """Write the run's model card after every checkpoint (over TRL's, which names no base model)."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                write_model_card(config, state.global_step)

    class ScheduleAfterResume(TrainerCallback):
        """The first step after a resume trains at the learning rate of the schedule as it now stands.

        A resume that changes `max_steps` plans the schedule again for the new length, but the optimiser's
        learning rate comes back from the checkpoint as the old plan left it (0 at the end of a finished
        run), and the first resumed step would train at that. Once, at that step, the rate is taken from
        the scheduler's plan at its step; on a resume that changes nothing it is the same rate.
        """

        def __init__(self):
            self.done = False

        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            if self.done:
                return
            self.done = True
            lr_scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # under accelerate's wrapper
            lambdas = getattr(lr_scheduler, "lr_lambdas", None)
            if state.global_step == 0 or optimizer is None or lambdas is None:
                return
            rates = [
                base * rate(lr_scheduler.last_epoch)
                for base, rate in zip(lr_scheduler.base_lrs, lambdas, strict=True)
            ]
            for group, rate in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = rate
            lr_scheduler._last_lr = rates

    callbacks: list[Any] = [MetricsLog(), ModelCard()]
    if live_plot:
        callbacks.append(LivePlot())
    if progress:
        callbacks.append(ProgressBar())
    return [*callbacks, ScheduleAfterResume()]


# --- training ---------------------------------------------------------------------------------------


def _logs_beside_the_bar(progress: bool) -> Any:
    """While the progress bar is live, console log lines go through the bar's own writer (never glued to it)."""
    if not progress:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    def on_the_console(logger: logging.Logger) -> bool:
        return any(
            isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)
            for handler in logger.handlers
        )

    # only the loggers that print: tqdm gives each logger named a handler of its own, and a record of
    # `helpers` that propagates to a root given one as well would be printed twice
    loggers = [
        logger for logger in (logging.getLogger(), logging.getLogger("helpers")) if on_the_console(logger)
    ]
    return logging_redirect_tqdm(loggers=loggers)


REPEATED_NOTICES = ("Both `max_new_tokens`",)
"""transformers notices that a generate call raises at every step of a GRPO run: on the Unsloth path
"Both `max_new_tokens` (=200) and `max_length`(=131072) seem to have been set", which is harmless
(`max_new_tokens` wins) and would add a line a step to the console and the log."""


class _DropRepeatedNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(REPEATED_NOTICES)


@contextlib.contextmanager
def _without_repeated_notices() -> Iterator[None]:
    """Drop `REPEATED_NOTICES` from transformers' generation logger while training."""
    logger = logging.getLogger("transformers.generation.utils")
    dropped = _DropRepeatedNotices()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def for_this_process(config: Config) -> Config:
    """The settings one of several training processes runs with: its share of the CPU cores for the reward pool.

    With `sandbox.max_workers` 0 (automatic), each of N processes on a machine gets cores / N workers
    (`helpers.sandbox_pool.auto_workers`), so that the pools of all the GPUs' processes do not fight over
    the cores.
    """
    processes = local_processes()
    if config.sandbox.max_workers or processes == 1:
        return config
    share = sandbox.auto_workers(processes)
    return replace(config, sandbox=replace(config.sandbox, max_workers=share))


def start_reward_pool(config: Config) -> Any:
    """Start the sandbox's worker pool now, before CUDA initialises (forked workers cannot use CUDA)."""

    return sandbox.get_pool(config.sandbox)


@contextlib.contextmanager
def _stop_gracefully(stopper: Any) -> Iterator[None]:
    """While training in one process: the first Ctrl-C or SIGTERM lets the step under way end and be saved
    (`stopper`), the second stops at once (KeyboardInterrupt), losing that step.

    Several processes keep the default (each would stop at its own step, and their collectives would
    wait for each other for ever); so does a thread other than the main one, which cannot set handlers.
    """
    if world_size() > 1 or threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = (signal.SIGINT, signal.SIGTERM)
    before = {number: signal.getsignal(number) for number in caught}

    def restore() -> None:
        for number, handler in before.items():
            signal.signal(number, handler)

    def ask(number: int, frame: Any) -> None:
        restore()  # a second signal takes the default way: at once
        stopper.asked = signal.Signals(number).name
        log.warning(
            "%s: the step under way ends and is saved as a checkpoint, then training stops; "
            "interrupt again to stop at once, losing that step",
            stopper.asked,
        )

    for number in caught:
        signal.signal(number, ask)
    try:
        yield
    finally:
        restore()


def _stop_callback() -> Any:
    """A TrainerCallback that ends training at the end of the step under way, saving it as a checkpoint,
    once its `asked` names a signal (`_stop_gracefully` sets it)."""
    from transformers import TrainerCallback

    class StopAtStepEnd(TrainerCallback):
        asked: str | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.asked:
                control.should_save = True
                control.should_training_stop = True

    return StopAtStepEnd()


def train(
    config: Config,
    resume: bool | str = False,
    model: Any = None,
    tokenizer: Any = None,
    live_plot: bool | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train with GRPO as configured; returns what was done (see `TrainResult`).

    `model`/`tokenizer` default to `load_model(config)`; pass them to reuse an already loaded model
    (its LoRA adapters are trained in place). `live_plot` defaults to True inside a notebook.
    `resume=True` continues the run in `output_dir` from its latest checkpoint; `resume="auto"` does so
    when there is one (the notebook's choice: running its cells again continues the run, never overwrites it).
    """

    check_trainable(
        config, loading=model is None
    )  # before the lock makes the folder: a refused run leaves nothing
    main = is_main_process()
    with run_folder_lock(config.training.output_dir) if main else contextlib.nullcontext():
        return _train(config, resume, model, tokenizer, live_plot, progress, callbacks, main)


def _train(
    config: Config,
    resume: bool | str,
    model: Any,
    tokenizer: Any,
    live_plot: bool | None,
    progress: bool,
    callbacks: Sequence[Any],
    main: bool,
) -> TrainResult:
    """`train` with the run folder held by this process (the main one)."""
    checkpoint = prepare_run_folder(config, resume, write=main)
    config = for_this_process(config)
    done = checkpoint_step(checkpoint) if checkpoint else 0
    if done >= config.training.max_steps:  # the trainer would run one step past the end
        holds = f"the run is complete at {checkpoint.name} (step {done} of {config.training.max_steps})"
        if model is not None:
            load_adapter_into(model, checkpoint)
            holds += ": the model now holds that checkpoint's adapter"
        log.info("%s; nothing to train", holds)
        records = read_metrics(metrics_path(config.training.output_dir))
        return TrainResult(
            output_dir=config.training.output_dir,
            global_step=done,
            checkpoint=str(checkpoint),
            resumed_from=str(checkpoint),
            seconds=0.0,
            last_metrics=records[-1] if records else {},
            model_holds=holds,
        )
    if checkpoint is not None:  # a damaged save is named, with the checkpoint before it, before a model loads
        check_adapter(checkpoint)
    rank_console(config.training.output_dir)  # ranks above 0: their banners go to console-rank<N>.log
    start_reward_pool(config)
    import_unsloth_if_used(config)
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    if model is None or tokenizer is None:
        model, tokenizer = load_model(config)
    install_logprob_fallback()
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=reward_functions(config),
        args=grpo_config(config),
        train_dataset=build_dataset(config),
        callbacks=[
            *_callbacks(
                config, main and (in_notebook() if live_plot is None else live_plot), main and progress
            ),
            *callbacks,
            stopper := _stop_callback(),
        ],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log as a dict; MetricsLog writes one line
    log.info(
        "training %s (%s) for %d steps into %s%s",
        config.training.model_name,
        config.training.profile,
        config.training.max_steps,
        config.training.output_dir,
        f", resuming from {checkpoint.name}" if checkpoint else "",
    )
    note = first_step_note(config)
    if note and main:
        log.info("%s", note)
    started = time.perf_counter()
    with _logs_beside_the_bar(progress), _without_repeated_notices(), _stop_gracefully(stopper):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    set_trained_steps(model, trainer.state.global_step)
    # in a notebook, the interrupt button must still stop the cells queued after this one
    if stopper.asked and in_notebook():
        raise KeyboardInterrupt(
            f"stopped at step {trainer.state.global_step}, saved in {latest_checkpoint(config.training.output_dir)}; "
            "the model holds that adapter; run this cell again to continue"
        )
    records = read_metrics(metrics_path(config.training.output_dir))
    latest = latest_checkpoint(config.training.output_dir)
    return TrainResult(
        output_dir=config.training.output_dir,
        global_step=trainer.state.global_step,
        checkpoint=str(latest) if latest else None,
        resumed_from=str(checkpoint) if checkpoint else None,
        seconds=seconds,
        last_metrics=records[-1] if records else {},
        model_holds=f"the model holds the adapter trained to step {trainer.state.global_step}"
        + (f", continued from {checkpoint.name}" if checkpoint else ""),
        interrupted=stopper.asked,
    )


# --- inference ---------------------------------------------------------------------------------------


def generate_strategies(
    model: Any, tokenizer: Any, config: Config, n: int = 4, max_new_tokens: int | None = None
) -> list[GeneratedStrategy]:
    """Sample `n` completions of the task prompt and extract the strategy from each.

    Uses the training settings (temperature, reasoning effort, completion length unless
    `max_new_tokens` is given), so it shows what GRPO is rewarding at this point.
    """
    import torch

    inputs = tokenizer.apply_chat_template(
        chat_messages(config.game),
        add_generation_prompt=True,
        reasoning_effort=config.training.reasoning_effort,
        return_dict=True,
        return_tensors="pt",
    )
    device = input_device(model)
    inputs = {key: value.to(device) for key, value in inputs.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens or config.training.max_completion_length,
                do_sample=True,
                temperature=config.training.temperature,
                num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
            )
    finally:
        model.train(was_training)
    completions = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [GeneratedStrategy(text=text, source=sandbox.extract_function(text)) for text in completions]
