"""Time GRPO steps on a random-weight model of the full gpt-oss-20b shape, split into their phases.

For each named configuration (generations per step, batch, gradient accumulation, steps per
generation, gradient checkpointing, completion length) this runs a few GRPO steps with Unsloth and
TRL on one GPU and reports, for the steady state after the first step (which compiles):
seconds per step, completions per second, and the step split into generation, reward, scoring (the
log-probabilities and advantages TRL computes between generation and the update) and optimisation
(forward, backward and the optimiser), plus the peak GPU memory.

The weights are random (`benchmarks/make_full_shape.py` builds them on the GPU host, since nothing
can be downloaded there), so completions never stop early: every completion is forced to
`max_completion_length` tokens, the worst case a real run meets only when it is clipped. The prompt is
the project's own task prompt through a word-level tokenizer, padded or cut to `--prompt-tokens`.
Reward evaluation on random text costs nothing, so `--reward-probe` also times the project's reward
functions on well-formed strategies (when `helpers.rewards` exists), one step's worth at once.

All configurations of one call share one loaded model. Every step is appended to `steps.jsonl` as it
ends, and `--deadline-s` stops training between steps (and tries, by SIGALRM, to interrupt a step in
progress; a step stuck in compiled code can outlive it, so wrap the call in `timeout` too). The first
step compiles for 4 to 8 minutes on a fresh H100 machine: budget one configuration per 10-minute call.
`--generation-sweep` times `generate()` alone at several batch sizes before the configurations;
`--generation-engines generate,continuous` adds transformers' continuous batching (TRL's
`use_transformers_continuous_batching`: a paged cache and CUDA graphs).

    python benchmarks/gpu_step.py --checkpoint /dev/shm/gpt-oss-20b-random --configs b8-g64 --out $OUT
    python benchmarks/gpu_step.py --tiny --backend transformers --configs tiny --out /tmp/gpu-step  # CPU check
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LoRA targets of the original configuration (Unsloth maps gate/up/down onto the MoE experts)."""


@dataclass(frozen=True)
class StepConfig:
    """One configuration of a GRPO step to time."""

    name: str
    """Short name used on the command line and in the results table."""
    num_generations: int
    """Completions per prompt (the GRPO group size)."""
    per_device_train_batch_size: int
    """Completions per micro-batch of the update."""
    gradient_accumulation_steps: int
    """Micro-batches per optimiser step."""
    steps_per_generation: int | None = None
    """Micro-batches served by one generation round (TRL's default: the accumulation steps)."""
    max_completion_length: int = 200
    """Tokens generated per completion (all of them, with random weights)."""
    gradient_checkpointing: str = "unsloth"
    """`unsloth`, `true` or `false` (set on the loaded model before the trainer is built)."""
    cache_implementation: str | None = None
    """Key-value cache for generation (`None`: dynamic; `static` lets transformers compile decoding)."""
    steps: int = 3
    """Steady-state optimiser steps to time (rounded up to whole generation rounds)."""

    @property
    def completions_per_step(self) -> int:
        """Completions consumed by one optimiser step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def generation_batch(self) -> int:
        """Completions generated in one round."""
        return self.per_device_train_batch_size * (
            self.steps_per_generation or self.gradient_accumulation_steps
        )

    @property
    def steps_per_round(self) -> int:
        """Optimiser steps served by one generation round."""
        return max(1, self.generation_batch // self.completions_per_step)


CONFIGS = {
    c.name: c
    for c in [
        StepConfig("original", 2, 1, 4),
        StepConfig("original-nogc", 2, 1, 4, gradient_checkpointing="false"),
        StepConfig("b8-g8", 8, 8, 1),
        StepConfig("b8-g16", 16, 8, 2),
        StepConfig("b16-g16", 16, 16, 1),
        StepConfig("b8-g32", 32, 8, 4),
        StepConfig("b16-g32", 32, 16, 2),
        StepConfig("b16-g64", 64, 16, 4),
        StepConfig("b8-g64", 64, 8, 8),
        StepConfig("b8-g128", 128, 8, 16),
        StepConfig("b16-g32-nogc", 32, 16, 2, gradient_checkpointing="false"),
        StepConfig("b16-g16-nogc", 16, 16, 1, gradient_checkpointing="false"),
        StepConfig("b16-g16-spg2", 16, 16, 1, steps_per_generation=2),
        StepConfig("b16-g32-static", 32, 16, 2, cache_implementation="static"),
        StepConfig("b16-g32-len400", 32, 16, 2, max_completion_length=400),
        StepConfig("tiny", 4, 4, 1, max_completion_length=16, gradient_checkpointing="false", steps=2),
        StepConfig("tiny-spg", 4, 2, 1, steps_per_generation=2, max_completion_length=16, steps=2),
    ]
}
"""The configurations this script knows, by name."""


@dataclass
class StepTiming:
    """Seconds spent in one optimiser step, by phase."""

    step: int
    """Optimiser step number (1-based, within its configuration)."""
    total: float
    """Wall seconds from the step's start to its end (GPU synchronised)."""
    generation: float = 0.0
    """Generating the completions (zero on steps served by an earlier round)."""
    reward: float = 0.0
    """Calling the reward functions."""
    scoring: float = 0.0
    """The rest of TRL's generate-and-score: log-probabilities, advantages, bookkeeping."""

    @property
    def optimisation(self) -> float:
        """Forward, backward and optimiser: the step minus generation, reward and scoring."""
        return self.total - self.generation - self.reward - self.scoring


@dataclass
class ConfigResult:
    """The timed steps of one configuration and their steady-state summary."""

    config: StepConfig
    """What was timed."""
    steps: list[StepTiming] = field(default_factory=list)
    """Every step, the first (compiling) one included."""
    warmup_steps: int = 1
    """Leading steps left out of the summary."""
    peak_memory_gb: float = 0.0
    """Peak GPU memory allocated by PyTorch during the configuration, GB."""
    logs: list[dict[str, Any]] = field(default_factory=list)
    """TRL's logged metrics, one dict per step."""
    error: str | None = None
    """Why the configuration stopped early, if it did."""

    def steady(self) -> list[StepTiming]:
        """The steps after the warm-up ones."""
        return self.steps[self.warmup_steps :]

    def summary(self) -> dict[str, Any]:
        """Steady-state means: seconds per step and per phase, completions per second, memory."""
        steady = self.steady()
        out: dict[str, Any] = {
            "name": self.config.name,
            "generations": self.config.num_generations,
            "batch": self.config.per_device_train_batch_size,
            "grad_accum": self.config.gradient_accumulation_steps,
            "generation_batch": self.config.generation_batch,
            "completion_tokens": self.config.max_completion_length,
            "grad_ckpt": self.config.gradient_checkpointing,
            "cache": self.config.cache_implementation or "dynamic",
            "steps_timed": len(steady),
            "first_step_s": round(self.steps[0].total, 1) if self.steps else None,
            "peak_gb": round(self.peak_memory_gb, 1),
            "error": self.error,
        }
        if not steady:
            return out
        n = len(steady)
        total = sum(s.total for s in steady)
        phases = {
            p: sum(getattr(s, p) for s in steady) / n
            for p in ("generation", "reward", "scoring", "optimisation")
        }
        rounds = sum(1 for s in steady if s.generation > 0) or 1
        generation_per_round = sum(s.generation for s in steady) / rounds
        lengths = [log["completions/mean_length"] for log in self.logs if "completions/mean_length" in log]
        clipped = [
            log["completions/clipped_ratio"] for log in self.logs if "completions/clipped_ratio" in log
        ]
        out.update(
            {
                "s_per_step": round(total / n, 2),
                "completions_per_s": round(n * self.config.completions_per_step / total, 3),
                **{f"{p}_s": round(v, 2) for p, v in phases.items()},
                "reward_share": round(phases["reward"] / (total / n), 4),
                "decode_ms_per_token": round(
                    1000 * generation_per_round / self.config.max_completion_length, 1
                ),
                "mean_completion_length": round(sum(lengths) / len(lengths), 1) if lengths else None,
                "clipped_ratio": round(sum(clipped) / len(clipped), 3) if clipped else None,
            }
        )
        return out


class PhaseTimer:
    """Accumulates synchronised wall time per phase for the step in progress."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self.synchronize = synchronize
        self.current: dict[str, float] = defaultdict(float)

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, timed into `phase` (the GPU is synchronised on entry and exit)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.synchronize()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.synchronize()
                self.current[phase] += time.perf_counter() - start

        return timed

    def take(self) -> dict[str, float]:
        """The phases of the step that just ended; starts a fresh step."""
        phases, self.current = dict(self.current), defaultdict(float)
        return phases


def timing_callback(result: ConfigResult, timer: PhaseTimer, deadline: float, journal: Path) -> Any:
    """A TrainerCallback that records each optimiser step into `result` and `journal` (one JSON line
    each, so a killed run keeps its steps) and stops training once `deadline` has passed."""
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            timer.synchronize()
            timer.take()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            timer.synchronize()
            total = time.perf_counter() - self.start
            phases = timer.take()
            around = phases.get("generate_and_score", 0.0)
            generation, reward = phases.get("generation", 0.0), phases.get("reward", 0.0)
            result.steps.append(
                StepTiming(
                    step=len(result.steps) + 1,
                    total=total,
                    generation=generation,
                    reward=reward,
                    scoring=max(0.0, around - generation - reward),
                )
            )
            s = result.steps[-1]
            print(
                f"  [{result.config.name}] step {s.step}: {s.total:.2f} s (generation {s.generation:.2f}, "
                f"reward {s.reward:.3f}, scoring {s.scoring:.2f}, optimisation {s.optimisation:.2f})",
                flush=True,
            )
            with journal.open("a") as lines:
                lines.write(
                    json.dumps({"config": result.config.name, **asdict(s), "optimisation": s.optimisation})
                    + "\n"
                )
            if time.monotonic() > deadline:
                result.error = "stopped at the deadline"
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                result.logs.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    return StepRecorder()


@contextlib.contextmanager
class DeadlineReached(BaseException):
    """Raised by `alarm`; a BaseException so that no library's `except Exception` fallback swallows it."""


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Raise DeadlineReached in this thread after `seconds` (stops a configuration stuck compiling)."""

    def expire(signum, frame):
        raise DeadlineReached(f"over its {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(max(1, seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def ensure_checkpoint(path: Path, tiny: bool, layout: str = "stacked") -> dict[str, Any]:
    """Build the random checkpoint in a separate process unless `path` holds one; its build report.

    For a 4-bit load it is built `per-expert` (Unsloth's 4-bit layout), which saves the per-expert
    copy `load_model` would otherwise write next to a stacked one (another 42 GB).
    """
    report = path / "build_report.json"
    if not report.exists():
        command = [sys.executable, str(ROOT / "benchmarks" / "make_full_shape.py"), str(path)]
        command += ["--tiny", "--device", "cpu"] if tiny else ["--device", "cuda"]
        command += ["--layout", layout]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        print(f"checkpoint built in {time.perf_counter() - start:.1f} s (process included)", flush=True)
    return json.loads(report.read_text())


def fit_prompt(
    tokenizer: Any, messages: list[dict[str, str]], tokens: int, effort: str
) -> list[dict[str, str]]:
    """The messages with the user text cut or padded (filler words) so the chat prompt has `tokens` ids."""

    def length(content: str) -> int:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, reasoning_effort=effort
        )
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    words = messages[-1]["content"].split(" ")
    while len(words) > 1 and length(" ".join(words)) > tokens:
        words.pop()
    while length(" ".join(words)) < tokens:
        words.append("board")
    return [{"role": "user", "content": " ".join(words)}]


def stand_in_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A reward of the right signature when `helpers.rewards` does not exist yet: the text length."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [len(t) / 1000.0 for t in texts]


def reward_functions() -> tuple[list[Callable[..., list[float]]], str]:
    """The project's reward functions for the `h100` profile, or the stand-in; and which it is."""
    try:
        from helpers.config import make_config
        from helpers.rewards import reward_functions as project_rewards
    except ImportError as error:
        return [stand_in_reward], f"stand-in (helpers.rewards not importable: {error})"
    config = make_config("h100")
    with contextlib.suppress(ImportError, AttributeError):  # start the worker pool before CUDA, if it exists
        from helpers.training import start_reward_pool

        start_reward_pool(config)
    return list(project_rewards(config)), "helpers.rewards.reward_functions(make_config('h100'))"


GREEDY_STRATEGY = """```python
def strategy(board):
    n = len(board)

    def slide(row):
        tiles = [v for v in row if v]
        out, i = [], 0
        while i < len(tiles):
            if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
                out.append(2 * tiles[i])
                i += 2
            else:
                out.append(tiles[i])
                i += 1
        return out + [0] * (n - len(out))

    def move(b, d):
        if d == "left":
            return [slide(r) for r in b]
        if d == "right":
            return [slide(r[::-1])[::-1] for r in b]
        cols = [list(c) for c in zip(*b)]
        moved = [slide(c) for c in cols] if d == "up" else [slide(c[::-1])[::-1] for c in cols]
        return [list(r) for r in zip(*moved)]

    best, key = -1, "a"
    for k, d in (("a", "left"), ("é", "up"), ("i", "right"), ("u", "down")):
        after = move(board, d)
        if after != board:
            empty = sum(v == 0 for r in after for v in r)
            if empty > best:
                best, key = empty, k
    return key
```"""

PROBE_STRATEGIES = [
    GREEDY_STRATEGY,  # looks one move ahead for the most empty cells: long games
    "```python\ndef strategy(board):\n    n = sum(v for row in board for v in row)\n"
    '    return ("a", "é", "i", "u")[n % 4]\n```',  # cycles through the moves
    '```python\ndef strategy(board):\n    import random\n    return random.choice(["a", "é", "i", "u"])\n```',
    '```python\ndef strategy(board):\n    import os\n    return "a"\n```',  # a forbidden import
    "I would move left most of the time.",  # no code at all
    "```python\ndef strategy(board):\n    while True:\n        pass\n```",  # runs out of time
]
"""Completions for the reward probe: the kinds of answer a trained model gives, good and bad."""


def probe_texts(group: int, strategies: list[str] = PROBE_STRATEGIES) -> list[str]:
    """`group` completions cycling through `strategies`, each one unique (a comment naming its index)."""
    return [
        strategies[i % len(strategies)].replace("(board):\n", f"(board):\n    # sample {i}\n") + f"\n{i}"
        for i in range(group)
    ]


def reward_probe(group: int) -> dict[str, Any]:
    """Time the reward functions on one step's worth (`group`) of realistic completions.

    Each completion is made unique (a comment naming its index) so that no cache or de-duplication
    makes the probe cheaper than a real step, where sampled completions all differ.
    """
    functions, source = reward_functions()
    texts = probe_texts(group)
    completions = [[{"role": "assistant", "content": text}] for text in texts]
    timings = []
    for round_ in range(2):
        if round_:
            completions = [[{"role": "assistant", "content": text + " again"}] for text in texts]
        start = time.perf_counter()
        for function in functions:
            function(completions=completions, prompts=[None] * group, completion_ids=[[0]] * group)
        timings.append(time.perf_counter() - start)
    return {
        "source": source,
        "completions": group,
        "first_s": round(timings[0], 3),
        "second_s": round(timings[1], 3),
    }


def load(checkpoint: Path, backend: str, load_in_4bit: bool) -> tuple[Any, Any, float, str]:
    """The LoRA model and tokenizer through `backend`; load seconds; which loader was used.

    The Unsloth backend goes through the project's `helpers.model.load_model` with the `h100` profile
    (or `dgx-spark` for 4-bit) pointed at the checkpoint, so the figures are what users run; while that
    module cannot be imported it calls FastLanguageModel itself with the same settings.
    """
    start = time.perf_counter()
    if backend == "transformers":
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGET_MODULES[:4])))
        return model, tokenizer, time.perf_counter() - start, "transformers + peft (attention LoRA)"
    try:
        from helpers.config import make_config
        from helpers.model import load_model
    except ImportError as error:
        print(
            f"helpers.model.load_model not importable ({error}): calling FastLanguageModel directly",
            flush=True,
        )
    else:
        profile = "dgx-spark" if load_in_4bit else "h100"
        model, tokenizer = load_model(make_config(profile, model_name=str(checkpoint)))
        return (
            model,
            tokenizer,
            time.perf_counter() - start,
            f"helpers.model.load_model(make_config({profile!r}))",
        )
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(checkpoint),
        max_seq_length=768,
        load_in_4bit=load_in_4bit,
        offload_embedding=load_in_4bit,
        dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=4,
        lora_alpha=8,
        target_modules=list(TARGET_MODULES),
        use_gradient_checkpointing="unsloth",
        random_state=3407,
    )
    return model, tokenizer, time.perf_counter() - start, "FastLanguageModel (the h100/dgx-spark settings)"


class PlainLogProbs:
    """TRL's chunked log-probability kernel in plain torch, for `--tiny` on a CPU without Triton."""

    @staticmethod
    def apply(hidden, weight, bias, labels, temperature, chunk_size, softcap, scale, outputs):
        """(log-probs of `labels`, entropy or None, None, None, None), as TRL's kernel returns them."""
        import torch

        logits = torch.nn.functional.linear(hidden, weight, bias).float() * scale
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        log_probs = (logits / temperature).log_softmax(-1)
        chosen = log_probs.gather(-1, labels[:, None]).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1) if "entropy" in outputs else None
        return chosen, entropy, None, None, None


def gradient_checkpointing_value(setting: str) -> str | bool:
    """The config string as Unsloth's `use_gradient_checkpointing` takes it."""
    return {"true": True, "false": False}.get(setting, setting)


def run_config(
    config: StepConfig,
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    rewards: list[Callable[..., list[float]]],
    deadline: float,
    out_dir: Path,
) -> ConfigResult:
    """Train `warm-up + steps` optimiser steps of `config` on the shared model and time each."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available()
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    rounds = -(-config.steps // config.steps_per_round)
    warmup = config.steps_per_round
    result = ConfigResult(config=config, warmup_steps=warmup)
    if hasattr(model, "_unsloth_gradient_checkpointing"):
        model._unsloth_gradient_checkpointing = gradient_checkpointing_value(config.gradient_checkpointing)
    args = GRPOConfig(
        output_dir=str(out_dir / "trainer" / config.name),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_generations=config.num_generations,
        steps_per_generation=config.steps_per_generation,
        max_completion_length=config.max_completion_length,
        generation_kwargs={"min_new_tokens": config.max_completion_length},
        cache_implementation=config.cache_implementation,
        chat_template_kwargs={"reasoning_effort": "low"},
        temperature=1.0,
        learning_rate=5e-5,
        lr_scheduler_type="linear",
        weight_decay=0.001,
        warmup_steps=0.1,
        optim="adamw_8bit" if cuda else "adamw_torch",
        max_steps=warmup + rounds * config.steps_per_round,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=3407,
        use_cpu=not cuda,
        gradient_checkpointing=config.gradient_checkpointing != "false",
    )
    rows = max(64, 4 * args.max_steps * config.completions_per_step)
    dataset = Dataset.from_list([{"prompt": messages} for _ in range(rows)])
    timer = PhaseTimer(synchronize)
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=rewards,
        args=args,
        train_dataset=dataset,
        callbacks=[timing_callback(result, timer, deadline, out_dir / "steps.jsonl")],
    )
    for attribute, phase in [
        ("_generate", "generation"),
        ("_calculate_rewards", "reward"),
        ("_generate_and_score_completions", "generate_and_score"),
    ]:
        setattr(trainer, attribute, timer.wrap(phase, getattr(trainer, attribute)))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        with alarm(int(deadline - time.monotonic())):
            trainer.train()
    except (Exception, DeadlineReached) as error:  # keep the steps timed so far, and the other configurations
        result.error = f"{type(error).__name__}: {str(error)[:300]}"
        traceback.print_exc()
        print(f"  [{config.name}] stopped: {result.error}", flush=True)
    if cuda:
        result.peak_memory_gb = torch.cuda.max_memory_allocated() / 1e9
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def time_generate(model: Any, tokenizer: Any, prompt: Any, batch: int, tokens: int) -> dict[str, Any]:
    """`model.generate` on `batch` copies of `prompt` (TRL's default path): 8 tokens untimed, then `tokens` timed."""
    import torch

    cuda = torch.cuda.is_available()
    inputs = {
        "input_ids": prompt.repeat(batch, 1),
        "attention_mask": torch.ones_like(prompt).repeat(batch, 1),
    }
    sample = {"do_sample": True, "temperature": 1.0, "pad_token_id": tokenizer.pad_token_id}
    model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, **sample)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    output = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, **sample)
    if cuda:
        torch.cuda.synchronize()
    return {"tokens": output.shape[1] - prompt.shape[1], "seconds": time.perf_counter() - start}


def continuous_generate(model: Any, tokenizer: Any, prompts: list[list[int]], tokens: int) -> list[int]:
    """Generate through transformers' continuous batching, as TRL's `use_transformers_continuous_batching` does.

    One `generate_batch` call, a fresh manager (TRL's call: no persistent manager, CUDA graphs captured
    in the warm-up, half the free memory for the paged cache). Returns each completion's token count.
    """
    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    generation = GenerationConfig(
        max_new_tokens=tokens,
        do_sample=True,
        temperature=1.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    outputs = model.generate_batch(
        prompts,
        generation_config=generation,
        continuous_batching_config=ContinuousBatchingConfig(max_memory_percent=0.5),
        progress_bar=False,
    )
    if len(outputs) != len(prompts):
        raise RuntimeError(f"generate_batch returned {len(outputs)} of {len(prompts)} completions")
    return [len(output.generated_tokens) for output in outputs.values()]


def time_continuous(model: Any, tokenizer: Any, prompt: Any, batch: int, tokens: int) -> dict[str, Any]:
    """`continuous_generate` twice, both timed: every call sets up its paged cache and CUDA graphs anew,
    as it does in every TRL step, so the first call's time is reported beside the second's."""
    import torch

    prompts = [prompt[0].tolist()] * batch
    start = time.perf_counter()
    continuous_generate(model, tokenizer, prompts, tokens)
    first = time.perf_counter() - start
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    lengths = continuous_generate(model, tokenizer, prompts, tokens)
    return {
        "first_call_s": round(first, 2),
        "tokens": max(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "seconds": time.perf_counter() - start,
    }


GENERATION_ENGINES = {"generate": time_generate, "continuous": time_continuous}
"""What `--generation-engines` can time: TRL's default `generate()`, or transformers' continuous batching."""


def generation_sweep(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    batches: list[int],
    tokens: int,
    deadline: float,
    engines: tuple[str, ...] = ("generate",),
) -> list[dict[str, Any]]:
    """Time generation alone at each engine (`GENERATION_ENGINES`) and batch size: `tokens` new tokens
    per sequence, sampled. This isolates how generation, the larger part of a step, scales with the
    completions generated at once."""
    import torch

    cuda = torch.cuda.is_available()
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, reasoning_effort="low", return_tensors="pt", return_dict=True
    )
    prompt = encoded["input_ids"].to("cuda" if cuda else "cpu")
    if hasattr(model, "for_inference"):
        model.for_inference()
    rows = []
    for engine in engines:
        for batch in batches:
            if time.monotonic() > deadline:
                break
            row: dict[str, Any] = {"engine": engine, "batch": batch}
            try:
                with torch.no_grad(), alarm(int(deadline - time.monotonic())):
                    row |= GENERATION_ENGINES[engine](model, tokenizer, prompt, batch, tokens)
            except (Exception, DeadlineReached) as error:
                traceback.print_exc()
                rows.append(row | {"error": f"{type(error).__name__}: {str(error)[:300]}"})
                print(f"generation sweep: {json.dumps(rows[-1])}", flush=True)
                break
            seconds = row.pop("seconds")
            rows.append(
                row
                | {
                    "seconds": round(seconds, 2),
                    "ms_per_token": round(1000 * seconds / tokens, 1),
                    "completions_per_s": round(batch / seconds, 3),
                    "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1) if cuda else 0.0,
                }
            )
            print(f"generation sweep: {json.dumps(rows[-1])}", flush=True)
    if hasattr(model, "for_training"):
        model.for_training()
    return rows


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    """The steady-state summaries as a markdown table."""
    columns = [
        ("name", "configuration"),
        ("generations", "gens"),
        ("batch", "batch"),
        ("grad_accum", "GA"),
        ("generation_batch", "gen batch"),
        ("grad_ckpt", "grad ckpt"),
        ("cache", "cache"),
        ("completion_tokens", "tokens"),
        ("s_per_step", "s/step"),
        ("completions_per_s", "compl/s"),
        ("generation_s", "gen s"),
        ("reward_s", "reward s"),
        ("scoring_s", "scoring s"),
        ("optimisation_s", "optim s"),
        ("decode_ms_per_token", "ms/token"),
        ("peak_gb", "peak GB"),
        ("first_step_s", "1st step s"),
        ("steps_timed", "steps"),
    ]
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for summary in summaries:
        lines.append("| " + " | ".join(str(summary.get(key, "")) for key, _ in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="/tmp/gpt-oss-20b-random", help="random checkpoint folder")
    parser.add_argument("--configs", default="b8-g64", help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=None, help="steady-state steps per configuration")
    parser.add_argument("--load-in-4bit", action="store_true", help="load the base weights in 4-bit")
    parser.add_argument("--prompt-tokens", type=int, default=170, help="prompt length in tokens")
    parser.add_argument("--deadline-s", type=float, default=540, help="stop configurations after this")
    parser.add_argument(
        "--reward-probe", action="store_true", help="also time the rewards on real strategies"
    )
    parser.add_argument(
        "--generation-sweep", default="", help="batch sizes to time generate() alone at, e.g. 8,64"
    )
    parser.add_argument(
        "--generation-engines",
        default="generate",
        help="engines for --generation-sweep: generate, continuous (transformers' continuous batching), or both",
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (checks this script)")
    parser.add_argument(
        "--backend", choices=["unsloth", "transformers"], default="unsloth", help="model loader"
    )
    parser.add_argument("--out", default="benchmark-out", help="folder for results.json and results.md")
    args = parser.parse_args()
    engines = tuple(name for name in args.generation_engines.split(",") if name)
    unknown = sorted(set(engines) - set(GENERATION_ENGINES))
    if unknown:
        parser.error(f"unknown --generation-engines {unknown}: choose from {sorted(GENERATION_ENGINES)}")
    deadline = time.monotonic() + args.deadline_s
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = [CONFIGS[name] for name in args.configs.split(",") if name]
    if args.steps is not None:
        configs = [replace(c, steps=args.steps) for c in configs]

    build = ensure_checkpoint(
        Path(args.checkpoint), args.tiny, "per-expert" if args.load_in_4bit else "stacked"
    )
    print(f"checkpoint: {json.dumps(build)}", flush=True)
    if args.backend == "unsloth":
        import unsloth  # noqa: F401  (before trl and transformers, as Unsloth requires)
    else:
        import trl.trainer.utils

        if trl.trainer.utils._ChunkedLogProbFunction is None:
            trl.trainer.utils._ChunkedLogProbFunction = PlainLogProbs
    import torch

    from helpers.prompts import chat_messages

    rewards, reward_source = reward_functions()
    model, tokenizer, load_seconds, loader = load(Path(args.checkpoint), args.backend, args.load_in_4bit)
    print(f"loaded in {load_seconds:.1f} s by {loader}; rewards: {reward_source}", flush=True)
    messages = fit_prompt(tokenizer, chat_messages(), args.prompt_tokens, "low")

    report: dict[str, Any] = {
        "machine": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "versions": {
            name: __import__(name).__version__
            for name in ("torch", "transformers", "trl", "peft", "unsloth")
            if name != "unsloth" or args.backend == "unsloth"
        },
        "checkpoint": build,
        "load_in_4bit": args.load_in_4bit,
        "load_s": round(load_seconds, 1),
        "loader": loader,
        "prompt_tokens": args.prompt_tokens,
        "rewards": reward_source,
        "results": [],
    }
    if args.generation_sweep:
        batches = [int(b) for b in args.generation_sweep.split(",")]
        tokens = configs[0].max_completion_length if configs else 200
        report["generation_sweep"] = generation_sweep(
            model, tokenizer, messages, batches, tokens, deadline, engines
        )
        (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    summaries = []
    for config in configs:
        if time.monotonic() > deadline - 30:
            print(f"skipping {config.name}: the deadline is near", flush=True)
            continue
        print(f"configuration {config.name}: {asdict(config)}", flush=True)
        result = run_config(config, model, tokenizer, messages, rewards, deadline, out_dir)
        summaries.append(result.summary())
        report["results"].append(
            {
                "summary": summaries[-1],
                "steps": [asdict(s) | {"optimisation": s.optimisation} for s in result.steps],
                "logs": result.logs,
            }
        )
        (out_dir / "results.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(summaries[-1]), flush=True)
    if args.reward_probe:
        report["reward_probe"] = reward_probe(max(c.generation_batch for c in configs))
        print(f"reward probe: {json.dumps(report['reward_probe'])}", flush=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(summaries)
    (out_dir / "results.md").write_text(table + "\n")
    print(table, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
