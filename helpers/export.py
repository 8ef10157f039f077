"""Save the trained model (LoRA adapter, merged 16-bit, MXFP4), then prove the training is in the files.

Formats:
- `lora`: the adapter alone (a few MB), loaded on top of the base model by peft, Unsloth or vLLM.
- `merged_16bit`: the LoRA deltas added into the base weights, saved in bfloat16 (Unsloth's
  `save_pretrained_merged` on the GPU path; peft's `merge_and_unload` on a fresh base otherwise).
- `mxfp4`: gpt-oss's own release format, what `openai/gpt-oss-20b` ships: the merged model with the
  expert weights packed as MXFP4 (blocks of 32 FP4 E2M1 values sharing one power-of-two scale,
  `*_blocks` and `*_scales` tensors, `quantization_config.quant_method = "mxfp4"`), everything
  else in bfloat16. transformers, vLLM and llama.cpp's converter read it. It is written here from
  the merged 16-bit export. Unsloth's own `save_method="mxfp4"` is a different thing (an
  llm-compressor W4A4 checkpoint for vLLM) whose dependencies conflict with this project's
  transformers (README.md, "MXFP4 and llm-compressor").

Verification (`verify_export`): after saving, the export is loaded back the way a user would load
it, and on a fixed prompt its change to the logits relative to the base model (`export - base`) is
compared with the trained adapter's change (`adapter - base`, in memory): at each position, the
difference relative to the adapter's change; the median over positions must stay within the
format's tolerance. Upstream regressions have silently dropped the MoE experts' LoRA deltas from
merged exports: such an export still differs from the base (the attention deltas are there), so
"differs from base" alone would pass it; the comparison of the two changes fails it. An untrained
adapter (no change to compare) is reported as inconclusive, not verified.

MXFP4 (`verify_mxfp4_export`) is checked in two steps: the merged 16-bit checkpoint it is packed
from must pass the check above, and the MXFP4 file must load back as that checkpoint with its
experts rounded to 4 bits. How much of the training's change survives the rounding is reported,
not judged: 4-bit experts erase a small change (a short training's), which the message says.

A process that has imported Unsloth loads merged and MXFP4 exports back in a fresh process
(`helpers.upstream` lists why).

No lost work: an export is written beside its destination, checked, and only then put in its place,
with `export.json` saying how many training steps it holds and what its check found. An export never
replaces one that holds more training steps (nor one whose steps are unknown): `ExportError` says so.
An export whose check failed is kept as `<folder>.failed` and the earlier export stays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.config import Config, TrainingConfig
from helpers.layout import (
    EXPERT_PARAMETERS,
    convert_checkpoint,
    copy_other_files,
    expert_layout,
    is_expert_tensor,
)
from helpers.model import input_device, load_base_model, load_model, quiet_loading, trained_steps
from helpers.mxfp4 import MXFP4Error, dequantize_mxfp4, quantize_mxfp4
from helpers.prompts import chat_messages
from helpers.upstream import unsloth_returns_logits

FORMATS = ("lora", "merged_16bit", "mxfp4")
"""Export formats, smallest first."""

STAMP_FILE = "export.json"
"""Written into every export: format, training steps, checkpoint, base model and the check's verdict."""

RELATIVE_TOLERANCE = {"lora": 0.02, "merged_16bit": 0.25, "mxfp4": 0.5}
"""Largest accepted difference between the export's change to the logits and the adapter's, relative to the latter.

Measured on the tiny model with random adapters: a correct LoRA reload differs by 0, a correct 16-bit
merge by 0.01-0.17 (rounding), a merge that drops the experts' or the attention's deltas by 0.56-0.96.
MXFP4 rounds the experts to 4 bits, which keeps a large change (0.2) but erases a small one (> 0.9):
for MXFP4 the value only decides whether `verify_mxfp4_export`'s message warns about it.
"""

MIN_EFFECT = 1e-4
"""Below this largest change of a logit, the adapter is taken as untrained and nothing can be verified."""

MXFP4_NOT_CONVERTED = (
    "model.layers.*.self_attn",
    "model.layers.*.mlp.router",
    "model.embed_tokens",
    "lm_head",
)
"""Modules gpt-oss keeps in bfloat16 in its MXFP4 checkpoints (as in openai/gpt-oss-20b's config)."""

PACKING_TOLERANCE = 1e-3
"""Largest logit difference, relative to the largest logit, between an MXFP4 export and its merged source rounded alike."""

WRITTEN_BY_MXFP4 = frozenset({"config.json", "model.safetensors.index.json"})
"""Files of the merged checkpoint that the MXFP4 writer rewrites instead of copying."""

CHECK_COMPLETION = 'def strategy(board):\n    return "a"\n'
"""The fixed answer appended to the task prompt for the logits comparison."""


class ExportError(RuntimeError):
    """A format cannot be produced here; the message says what to install or do."""


class ExportVerificationError(ExportError):
    """The export was written but does not hold the trained weights (the check's numbers are in the message)."""


@dataclass
class ExportCheck:
    """The reload check of one export: does it change the model the way the adapter does?"""

    verdict: str
    """`verified`, `inconclusive` (the adapter changes nothing yet) or `failed`."""
    effect: float
    """Largest change the adapter makes to a logit on the fixed prompt (adapter - base)."""
    mismatch: float
    """Median over positions of |(export - base) - (adapter - base)| / |adapter - base| (logit vectors)."""
    tolerance: float
    """Largest mismatch accepted for the format (`RELATIVE_TOLERANCE`)."""
    message: str
    """The verdict in words."""


@dataclass
class ExportResult:
    """One saved export."""

    format: str
    """One of `FORMATS`."""
    path: str
    """The folder written."""
    seconds: float
    """Time to save (and, for mxfp4, to merge and pack)."""
    check: ExportCheck | None
    """The reload check, or None when verification was skipped."""
    steps: int | None = None
    """The training steps the exported adapter holds (None when nothing recorded them)."""


def _training(config: Config | TrainingConfig) -> TrainingConfig:
    return config.training if isinstance(config, Config) else config


def default_export_dir(config: Config | TrainingConfig, fmt: str) -> Path:
    """Where an export goes unless told otherwise: `<output_dir>/export-<format>`."""
    return Path(_training(config).output_dir) / f"export-{fmt}"


def format_unsupported(model: Any, fmt: str) -> str | None:
    """Why `model` cannot be exported as `fmt`, or None when it can."""
    model_type = getattr(getattr(model, "config", None), "model_type", "gpt_oss")
    if fmt == "mxfp4" and model_type != "gpt_oss":
        return (
            f"MXFP4 is gpt-oss's release format, which packs its mixture-of-experts weights; this model "
            f"({model_type}) has no experts to pack: export lora or merged_16bit"
        )
    return None


def export_model(
    model: Any,
    tokenizer: Any,
    config: Config | TrainingConfig,
    fmt: str,
    path: str | os.PathLike | None = None,
    verify: bool = True,
) -> ExportResult:
    """Save `model` (a LoRA-adapted model from `load_model`) in a format, then check the export.

    Raises `ExportError` when the format cannot be produced or would replace an export of more
    training steps, and `ExportVerificationError` when the export does not carry the trained weights.
    """
    with quiet_loading():
        return _export(model, tokenizer, config, fmt, path, verify)


def _export(
    model: Any,
    tokenizer: Any,
    config: Config | TrainingConfig,
    fmt: str,
    path: str | os.PathLike | None,
    verify: bool,
) -> ExportResult:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    training = _training(config)
    unsupported = format_unsupported(model, fmt)
    if unsupported:
        raise ExportError(unsupported)
    path = Path(path) if path is not None else default_export_dir(training, fmt)
    steps = trained_steps(model)
    refuse_to_replace(path, fmt, steps)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if fmt == "lora":
        save_lora(model, tokenizer, partial)
    elif fmt == "merged_16bit":
        save_merged_16bit(model, tokenizer, training, partial)
    else:
        with tempfile.TemporaryDirectory(prefix="merged-", dir=partial.parent) as tmp:
            save_merged_16bit(model, tokenizer, training, Path(tmp))
            convert_to_mxfp4(Path(tmp), partial)
            seconds = time.perf_counter() - started
            check = verify_mxfp4_export(model, tokenizer, training, partial, Path(tmp)) if verify else None
        return _put_in_place(fmt, partial, path, seconds, check, steps, training)
    seconds = time.perf_counter() - started
    check = verify_export(model, tokenizer, training, fmt, partial) if verify else None
    return _put_in_place(fmt, partial, path, seconds, check, steps, training)


def read_stamp(path: str | os.PathLike) -> dict[str, Any] | None:
    """An export folder's `export.json`, or None when there is none (or it cannot be read)."""
    try:
        stamp = json.loads((Path(path) / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def refuse_to_replace(path: Path, fmt: str, steps: int | None) -> None:
    """Raise `ExportError` when `path` holds an export that a model at `steps` must not replace."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    stamp = read_stamp(path)
    if stamp is None:
        raise ExportError(
            f"{path} already holds files but no {STAMP_FILE} (an export of an earlier version, or something "
            "else): not writing over it. Move it away, or export to another folder."
        )
    held = stamp.get("steps")
    if steps is None:
        raise ExportError(
            f"{path} holds a {fmt} export of step {held} ({stamp.get('verdict')}), and nothing records how many "
            "steps this model was trained: not replacing it. Export a checkpoint (--checkpoint on the command "
            "line; load_model(config, adapter=<checkpoint>) in Python), or export to another folder (--output)."
        )
    if isinstance(held, int) and held > steps:
        raise ExportError(
            f"{path} holds a {fmt} export of step {held} ({stamp.get('verdict')}); this model holds step {steps}: "
            "not replacing it with a less trained one. Export the run's latest checkpoint (on the command line "
            "--checkpoint <run>/checkpoint-N; in Python train(config, resume='auto', model=...) loads it), or "
            "export to another folder (--output)."
        )


def _put_in_place(
    fmt: str,
    partial: Path,
    path: Path,
    seconds: float,
    check: ExportCheck | None,
    steps: int | None,
    training: TrainingConfig,
) -> ExportResult:
    """Stamp the checked export and move it into `path`; a failed one is kept aside and raises."""
    stamp = {
        "format": fmt,
        "steps": steps,
        "base_model": training.model_name,
        "run": training.output_dir,
        "verdict": check.verdict if check else "not verified",
        "check": dataclasses.asdict(check) if check else None,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (partial / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    if check is not None and check.verdict == "failed":
        failed = path.with_name(path.name + ".failed")
        shutil.rmtree(failed, ignore_errors=True)
        partial.rename(failed)
        kept = f"; {path} is unchanged" if path.exists() else ""
        raise ExportVerificationError(f"{fmt} export, kept in {failed}{kept}: {check.message}")
    if path.exists():
        old = path.with_name(path.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        partial.rename(path)
        shutil.rmtree(old)
    else:
        partial.rename(path)
    return ExportResult(format=fmt, path=str(path), seconds=seconds, check=check, steps=steps)


# --- writers ---------------------------------------------------------------------------------------


def save_lora(model: Any, tokenizer: Any, path: Path) -> None:
    """The adapter weights and config, plus the tokenizer."""
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def save_merged_16bit(model: Any, tokenizer: Any, training: TrainingConfig, path: Path) -> None:
    """Base weights plus LoRA deltas, in bfloat16; the in-memory model keeps its adapters."""
    if hasattr(model, "save_pretrained_merged"):  # Unsloth
        model.save_pretrained_merged(str(path), tokenizer, save_method="merged_16bit")
        restack_experts(path)
        return
    import torch
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="adapter-") as adapter_dir:
        model.save_pretrained(adapter_dir)
        base = load_base_model(training.model_name, like=model)  # float32 on a CPU: round once, when saving
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.to(torch.bfloat16).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def restack_experts(path: Path) -> bool:
    """Rewrite a merged checkpoint whose experts are per-expert modules into the stacked layout, in place.

    Unsloth merges a model it loaded in 4-bit from a local per-expert copy (`helpers.layout`) into
    that copy's layout, which plain transformers, vLLM and the MXFP4 packer do not read. Returns
    whether anything was rewritten.
    """

    if expert_layout(path) != "per-expert":
        return False
    stacked = path.with_name(path.name + ".stacked")
    shutil.rmtree(stacked, ignore_errors=True)
    convert_checkpoint(path, stacked, "stacked")
    shutil.rmtree(path)
    stacked.rename(path)
    return True


def convert_to_mxfp4(merged_dir: Path, path: Path) -> None:
    """Write gpt-oss's MXFP4 checkpoint at `path` from a merged 16-bit checkpoint in `merged_dir`."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    shards = sorted(merged_dir.glob("*.safetensors"))
    if not shards:
        raise ExportError(f"no safetensors weights in {merged_dir}: cannot pack MXFP4")
    path.mkdir(parents=True, exist_ok=True)
    packed = 0
    weight_map = {}
    for shard in shards:
        tensors = {}
        with safe_open(str(shard), framework="pt") as file:
            for name in file.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensor = file.get_tensor(name)
                if is_expert_tensor(name) and tensor.dim() == 3:
                    # Packed from bfloat16, the precision a merged checkpoint is read back in: a float32 one
                    # (Unsloth keeps a float32 base's precision) otherwise rounds to other FP4 codes here.
                    try:
                        packed_pair = quantize_mxfp4(tensor.to(torch.bfloat16))
                    except MXFP4Error as error:
                        raise ExportError(str(error)) from error
                    tensors[name + "_blocks"], tensors[name + "_scales"] = packed_pair
                    packed += 1
                else:
                    tensors[name] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        save_file(tensors, str(path / shard.name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard.name))
    if not packed:
        raise ExportError(
            f"the merged checkpoint in {merged_dir} has no stacked gpt-oss expert tensors "
            f"({', '.join(EXPERT_PARAMETERS)}); MXFP4 packing needs the transformers layout. Export merged_16bit instead."
        )
    if len(shards) > 1:
        index = {"metadata": {}, "weight_map": weight_map}
        (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config = json.loads((merged_dir / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": list(MXFP4_NOT_CONVERTED),
    }
    config["dtype"] = "bfloat16"
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copy_other_files(merged_dir, path, skip=WRITTEN_BY_MXFP4)


# --- verification ------------------------------------------------------------------------------------


def check_inputs(tokenizer: Any, config: Config | TrainingConfig, device: Any) -> Any:
    """Token ids of the fixed prompt the check runs on: the task prompt and a short answer."""

    game = config.game if isinstance(config, Config) else None
    messages = [*chat_messages(game), {"role": "assistant", "content": CHECK_COMPLETION}]
    ids = tokenizer.apply_chat_template(messages, return_dict=True, return_tensors="pt")["input_ids"]
    return ids.to(device)


def _logits(model: Any, input_ids: Any) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=input_ids).logits.float()


def _round_experts_to_mxfp4(model: Any) -> None:
    """Replace a loaded model's expert weights by their MXFP4 rounding, in place."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if is_expert_tensor(name) and parameter.dim() == 3:
                rounded = dequantize_mxfp4(*quantize_mxfp4(parameter))
                parameter.copy_(rounded.to(parameter.dtype))


def export_logits(
    fmt: str, path: Path, training: TrainingConfig, input_ids: Any, reference: str | None = None
) -> tuple[Any, Any]:
    """Logits of the export loaded back, and of the model it is compared with, loaded alike.

    LoRA goes through `load_model` (the training loader: Unsloth's per-expert adapter layout needs
    Unsloth), its base is the same model with the adapter disabled. Merged and MXFP4 exports go
    through plain transformers, as a user would load them, one model at a time, next to `reference`
    (the base model by default) loaded the same way: for MXFP4, with its experts rounded by the packer.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if fmt == "lora":
        reloaded, _ = load_model(training, adapter=path)
        reloaded.eval()
        ids = input_ids.to(input_device(reloaded))
        exported = _logits(reloaded, ids)
        with reloaded.disable_adapter():
            return exported, _logits(reloaded, ids)
    on_gpu = input_ids.device.type == "cuda"
    compute = torch.bfloat16 if on_gpu else torch.float32
    placement: dict[str, Any] = {"device_map": "auto"} if on_gpu else {}
    if fmt == "mxfp4":
        from transformers import Mxfp4Config

        placement["quantization_config"] = Mxfp4Config(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16, **placement)
    exported = _logits(model.to(compute).eval(), input_ids)
    del model
    placement.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_pretrained(
        reference or training.model_name, dtype=torch.bfloat16, **placement
    )
    if fmt == "mxfp4":
        _round_experts_to_mxfp4(model)
    return exported, _logits(model.to(compute).eval(), input_ids)


def _export_logits_in_fresh_process(
    fmt: str, path: Path, training: TrainingConfig, input_ids: Any, reference: str | None = None
) -> tuple[Any, Any]:
    """`export_logits` in a new Python process, away from the patches Unsloth made to this one's transformers.

    Unsloth compiles gpt-oss's router for the model it loaded; in a 4-bit run, a bfloat16 gpt-oss
    loaded next to it by plain transformers failed inside that compiled code (torch dynamo), and the
    process was left unable to load models. A fresh process loads the export as a user would.
    """
    import torch

    with tempfile.TemporaryDirectory(prefix="export-check-") as tmp:
        request = Path(tmp) / "request.json"
        answer = Path(tmp) / "logits.pt"
        request.write_text(
            json.dumps(
                {
                    "fmt": fmt,
                    "path": str(path),
                    "training": dataclasses.asdict(training),
                    "input_ids": input_ids.tolist(),
                    "on_gpu": input_ids.device.type == "cuda",
                    "reference": reference,
                    "answer": str(answer),
                }
            )
        )
        root = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
        }
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from helpers.export import _answer_logits_request; _answer_logits_request({str(request)!r})",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise ExportVerificationError(
                f"could not load the {fmt} export {path} back: {child.stderr[-1500:]}"
            )
        logits = torch.load(answer)
    return logits["exported"], logits["base"]


def _answer_logits_request(request_path: str) -> None:
    """The fresh process's side of `_export_logits_in_fresh_process`."""
    import torch

    request = json.loads(Path(request_path).read_text())
    fields = {
        key: tuple(value) if isinstance(value, list) else value for key, value in request["training"].items()
    }
    input_ids = torch.tensor(request["input_ids"], device="cuda" if request["on_gpu"] else "cpu")
    with quiet_loading():
        exported, base = export_logits(
            request["fmt"], Path(request["path"]), TrainingConfig(**fields), input_ids, request["reference"]
        )
    torch.save({"exported": exported.cpu(), "base": base.cpu()}, request["answer"])


def _reload(
    fmt: str,
    path: Path,
    training: TrainingConfig,
    input_ids: Any,
    reference: str | None,
    fresh_process: bool | None,
) -> tuple[Any, Any]:
    """`export_logits`, in a fresh process when asked or, by default, when Unsloth is loaded here."""
    if fresh_process is None:
        fresh_process = "unsloth" in sys.modules and fmt != "lora"
    reload = _export_logits_in_fresh_process if fresh_process else export_logits
    with unsloth_returns_logits():
        return reload(fmt, path, training, input_ids, reference)


def _adapter_logits(model: Any, tokenizer: Any, config: Config | TrainingConfig) -> tuple[Any, Any, Any]:
    """(the fixed prompt's ids, the adapter model's logits on it, the same with the adapter disabled)."""
    was_training = model.training
    model.eval()
    try:
        with unsloth_returns_logits():
            input_ids = check_inputs(tokenizer, config, input_device(model))
            trained = _logits(model, input_ids)
            with model.disable_adapter():
                return input_ids, trained, _logits(model, input_ids)
    finally:
        model.train(was_training)


def verify_export(
    model: Any,
    tokenizer: Any,
    config: Config | TrainingConfig,
    fmt: str,
    path: str | os.PathLike,
    fresh_process: bool | None = None,
) -> ExportCheck:
    """Load the export back and compare its change to the logits with the in-memory adapter's.

    `model` is the trained adapter model; its base's logits come from disabling the adapter.
    `fresh_process` loads a merged or MXFP4 export in a new Python process; by default it does so
    when Unsloth is loaded here (see `_export_logits_in_fresh_process`). For an MXFP4 export this
    measures how much of the training's change survives the 4-bit experts; `verify_mxfp4_export`
    is the check `export_model` runs.
    """
    training = _training(config)
    input_ids, trained, untrained = _adapter_logits(model, tokenizer, config)
    exported, export_base = _reload(fmt, Path(path), training, input_ids, None, fresh_process)
    change = (trained - untrained).cpu()[0]
    export_change = (exported - export_base).cpu()[0]
    effect = float(change.abs().max())
    # Per position, the size of the difference relative to the size of the change; the median ignores
    # the few positions where rounding flips an MoE routing decision and the logits jump.
    relative = (export_change - change).norm(dim=-1) / change.norm(dim=-1).clamp_min(1e-12)
    mismatch = float(relative.median())
    tolerance = RELATIVE_TOLERANCE[fmt]
    if effect < MIN_EFFECT:
        verdict, mismatch = "inconclusive", float("nan")
        message = (
            f"the adapter changes the logits by at most {effect:.2e} (untrained?), so the export cannot be told "
            "apart from the base model; train some steps and export again to verify it"
        )
    elif mismatch <= tolerance:
        verdict = "verified"
        message = (
            f"the export changes the logits as the trained adapter does (relative difference {mismatch:.3f}, "
            f"tolerance {tolerance}; largest change of a logit {effect:.3g})"
        )
    else:
        verdict = "failed"
        cause = (
            "MXFP4 rounds the expert weights to 4 bits, which erases a change this small; use merged_16bit or lora"
            if fmt == "mxfp4"
            else "a merge that dropped some LoRA deltas (the MoE experts' in known upstream regressions) looks "
            "like this; the lora export keeps them exactly"
        )
        message = (
            f"the export does not carry the trained weights: its change to the logits differs from the adapter's "
            f"by {mismatch:.2f} of that change (tolerance {tolerance}; largest change of a logit {effect:.3g}); {cause}"
        )
    return ExportCheck(
        verdict=verdict, effect=effect, mismatch=mismatch, tolerance=tolerance, message=message
    )


def verify_mxfp4_export(
    model: Any,
    tokenizer: Any,
    config: Config | TrainingConfig,
    path: str | os.PathLike,
    merged_dir: str | os.PathLike,
    fresh_process: bool | None = None,
) -> ExportCheck:
    """Check an MXFP4 export against the merged 16-bit checkpoint it was packed from.

    Three questions: does the merged checkpoint carry the trained weights (`verify_export`, which
    catches dropped deltas); does the MXFP4 file load back as that merged model with its experts
    rounded to 4 bits (a packing or layout fault fails here); and how much of the training's change
    survives the rounding (reported, not judged: a small change to the experts does not).
    """
    training = _training(config)
    merged = verify_export(model, tokenizer, config, "merged_16bit", merged_dir, fresh_process)
    if merged.verdict == "failed":
        return dataclasses.replace(merged, message=f"the merged model it was packed from: {merged.message}")
    input_ids = check_inputs(tokenizer, config, input_device(model))
    packed, rounded = _reload("mxfp4", Path(path), training, input_ids, str(merged_dir), fresh_process)
    packing = float((packed - rounded).abs().max() / rounded.abs().max().clamp_min(1e-12))
    if packing > PACKING_TOLERANCE:
        message = (
            f"the MXFP4 file does not load back as the merged model with 4-bit experts (largest logit "
            f"difference {packing:.2e} of the largest logit, tolerance {PACKING_TOLERANCE})"
        )
        return dataclasses.replace(merged, verdict="failed", message=message)
    survived = verify_export(model, tokenizer, config, "mxfp4", path, fresh_process)
    rounding = (
        ""
        if merged.verdict == "inconclusive"
        else f"; rounding the experts to 4 bits moves the change by {survived.mismatch:.2f} of its size"
        + (
            " (most of the training's change to the experts does not survive it: prefer merged_16bit or lora)"
            if survived.mismatch > RELATIVE_TOLERANCE["mxfp4"]
            else ""
        )
    )
    message = f"{merged.message}; packed as MXFP4, it loads back as that model with 4-bit experts{rounding}"
    return dataclasses.replace(merged, message=message)
