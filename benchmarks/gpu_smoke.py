"""The Unsloth path end to end on a CUDA GPU, with the tiny random gpt-oss (no download).

For each of 4-bit (the `dgx-spark` profile) and 16-bit (the `h100` profile), in a process of its own:
start the reward worker pool, load the tiny model through `helpers.model.load_model` (Unsloth's
FastLanguageModel + LoRA), let it write strategies, train 3 GRPO steps with the project's reward
functions, export LoRA / merged 16-bit / MXFP4 with the reload check, then check the check: give
the adapters random weights (a stand-in for a long training, which 3 steps of a random model are
not), export again, and drop the experts' deltas from a merged export to see the check fail. It also
records what Unsloth's own `save_method="mxfp4"` does with this stack.

The tiny model stores its experts stacked (the transformers layout). Unsloth 2026.10.7's 4-bit
loader reads one module per expert instead and, given the stacked file, left the experts and the
router randomly initialised (an earlier run of this script found it). `load_model` now hands it a
per-expert copy (`helpers.layout`), and the run checks that the loaded weights are the checkpoint's:
the 4-bit experts dequantized against the file's, the router exactly.

    export PYTHONPATH=$PWD/.gpu-site:$PWD PYTHONUNBUFFERED=1
    python benchmarks/gpu_smoke.py --out "$OUT"

Writes `gpu_smoke-<mode>.json` per mode and `gpu_smoke.md` (the summary for RESULTS.md) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}.items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("UNSLOTH_DISABLE_LLM_COMPRESSOR_AUTOINSTALL", "1")  # no network: say so, do not try

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {"4bit": "dgx-spark", "16bit": "h100"}
"""Smoke modes and the profile each one uses (only the model folder and the step counts change)."""

MODE_SETTINGS = {"4bit": {"gradient_checkpointing": "false"}}
"""Settings a mode changes for the tiny model (`--set` overrides them). In 4-bit, the tiny model crashed in
Unsloth 2026.10.7's compiled router with gradient checkpointing on (torch dynamo `StopIteration` in a
guard, in the backward's recomputation with `unsloth`, in the next forward with `true`); the full-shape
model trains in 4-bit with the profile's own `unsloth` checkpointing (benchmarks/RESULTS.md)."""


def _innermost_frames(error: BaseException, count: int = 6) -> list[str]:
    """The last frames of an error's traceback, first cause first (where a wrapped error began)."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    frames = traceback.extract_tb(error.__traceback__)[-count:]
    return [f"{Path(frame.filename).name}:{frame.lineno} {frame.name}: {frame.line}" for frame in frames] + [
        f"{type(error).__name__}: {error}"[:300]
    ]


class Stages:
    """Runs named stages, records each one's time, result or error, and keeps going."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def run(self, name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        print(f"--- {name}", flush=True)
        try:
            value = function(*args, **kwargs)
        except BaseException as error:  # a smoke run reports every failure and goes on
            self.results[name] = {
                "ok": False,
                "seconds": round(time.perf_counter() - started, 2),
                "error": f"{type(error).__name__}: {error}"[:2000],
                "where": _innermost_frames(error),
            }
            traceback.print_exc()
            return None
        self.results[name] = {"ok": True, "seconds": round(time.perf_counter() - started, 2)}
        return value

    def note(self, name: str, **facts: Any) -> None:
        self.results.setdefault(name, {}).update(facts)


def check_facts(result: Any) -> dict[str, Any]:
    """The parts of an `ExportResult` worth keeping."""
    check = result.check
    return {
        "path": result.path,
        "export_seconds": round(result.seconds, 2),
        "verdict": check.verdict if check else None,
        "mismatch": None if check is None else round(check.mismatch, 4),
        "effect": None if check is None else round(check.effect, 4),
        "message": check.message if check else None,
    }


def train_and_export(
    stages: Stages, model: Any, tokenizer: Any, config: Any, pool: Any, generate_first: bool = True
) -> None:
    """Strategies before training, 3 GRPO steps with the project's rewards, and the three exports."""
    from helpers.training import generate_strategies, train

    before = None
    if generate_first:
        before = stages.run(
            "generate 2 strategies before training", generate_strategies, model, tokenizer, config, 2
        )
    if before:
        stages.note("generate 2 strategies before training", samples=[item.text[:120] for item in before])
    result = stages.run(
        "train 3 GRPO steps (project rewards)",
        train,
        config,
        model=model,
        tokenizer=tokenizer,
        progress=False,
    )
    if result is not None:
        metrics = result.last_metrics
        stages.note(
            "train 3 GRPO steps (project rewards)",
            global_step=result.global_step,
            checkpoint=Path(result.checkpoint).name if result.checkpoint else None,
            reward=metrics.get("reward"),
            rewards={
                key: value
                for key, value in metrics.items()
                if key.startswith("rewards/") and key.endswith("/mean")
            },
            outcomes={key: value for key, value in metrics.items() if key.startswith("outcomes/")},
            pool_workers=getattr(pool, "size", None),
            seconds_per_step=round(result.seconds / 3, 2),
        )
    from helpers import export

    for fmt in export.FORMATS:
        exported = stages.run(
            f"export {fmt} after 3 steps", export.export_model, model, tokenizer, config, fmt
        )
        if exported is not None:
            stages.note(f"export {fmt} after 3 steps", **check_facts(exported))


def weights_match_checkpoint(model: Any, folder: Path) -> dict[str, Any]:
    """Relative error between the loaded expert and router weights of layer 0 and the checkpoint's.

    About 0.1 for 4-bit NF4 experts and 0 for 16-bit ones; a weight left randomly initialised
    differs by about 1.4 (two independent draws of the same scale). Raises when one is off.
    """
    import re

    from safetensors.torch import load_file

    checkpoint = load_file(str(folder / "model.safetensors"))
    expected = {
        "expert 1 gate_up": checkpoint["model.layers.0.mlp.experts.gate_up_proj"][1].float(),
        "router": checkpoint["model.layers.0.mlp.router.weight"].float(),
    }
    found: dict[str, Any] = {}
    for name, module in model.named_modules():
        if re.search(r"layers\.0\.mlp\.experts\.gate_up_projs\.1$", name):  # 4-bit: nn.Linear per expert
            weight = getattr(module, "base_layer", module).weight
            state = getattr(weight, "quant_state", None)
            if state is not None:
                import bitsandbytes.functional as bnb

                found["expert 1 gate_up"] = bnb.dequantize_4bit(weight.data, state).float().t()
                found["expert quantized"] = True
            else:
                found["expert 1 gate_up"] = weight.float().t()
    for name, parameter in model.named_parameters():
        if re.search(r"layers\.0\.mlp\.experts\.(base_layer\.)*gate_up_proj$", name) and parameter.dim() == 3:
            found["expert 1 gate_up"] = parameter[1].float()
        if re.search(r"layers\.0\.mlp\.router\.(base_layer\.)*(linear\.)?weight$", name):
            found["router"] = parameter.float()
    facts: dict[str, Any] = {"expert quantized": found.pop("expert quantized", False)}
    for key, want in expected.items():
        if key not in found:
            raise AssertionError(f"no {key} weight found in the loaded model")
        got = found[key].detach().cpu()
        facts[f"{key} relative error"] = round(float((got - want).norm() / want.norm()), 4)
    bad = {key: value for key, value in facts.items() if "error" in key and value > 0.2}
    if bad:
        raise AssertionError(f"loaded weights are not the checkpoint's: {bad}")
    return facts


def run_mode(
    mode: str,
    out: Path,
    exports_only: bool = False,
    generate_first: bool = True,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything for one mode, in this process; returns the record written to gpu_smoke-<mode>.json.

    `exports_only` skips generation, training and the exports after training (the adapters are
    random for the export checks anyway): a shorter run that re-checks the export path alone.
    """
    from helpers.config import make_config
    from helpers.training import start_reward_pool

    work = Path(tempfile.mkdtemp(prefix=f"gpu-smoke-{mode}-"))
    stages = Stages()
    base_config = make_config(MODES[mode])
    pool = stages.run("reward pool started before CUDA", start_reward_pool, base_config)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    stages.note("environment", gpu=gpu, torch=torch.__version__, python=platform.python_version())
    from helpers.model import import_unsloth_if_used, load_model
    from helpers.tiny_model import make_tiny_model

    stages.run("import Unsloth before transformers", import_unsloth_if_used, base_config)

    tiny = stages.run("make the tiny gpt-oss", make_tiny_model, work / "tiny-gpt-oss")
    config = make_config(
        MODES[mode],
        model_name=str(tiny),
        output_dir=str(work / "run"),
        max_steps=3,
        save_steps=3,
        dataset_size=64,
        max_completion_length=64,  # a random model never stops: shorter completions, same code path
        **{**MODE_SETTINGS.get(mode, {}), **(overrides or {})},
    )
    from helpers.model import unsloth_model_path

    stages.note("what Unsloth loads", path=unsloth_model_path(config))
    loaded = stages.run("load_model (Unsloth + LoRA)", load_model, config)
    if loaded is None:
        return {"mode": mode, "profile": MODES[mode], "stages": stages.results}
    model, tokenizer = loaded
    import transformers
    import trl

    lora = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    stages.note(
        "load_model (Unsloth + LoRA)",
        unsloth=getattr(sys.modules.get("unsloth"), "__version__", "not loaded"),
        transformers=transformers.__version__,
        trl=trl.__version__,
        model_class=type(model).__name__,
        trainable_tensors=len(lora),
        expert_lora_tensors=sum("expert" in name for name in lora),
        expert_lora_examples=[name.replace("base_model.model.", "") for name in lora if "expert" in name][:2],
        attention_lora_tensors=sum("self_attn" in name for name in lora),
        quantized_4bit=any("Linear4bit" in type(module).__name__ for module in model.modules()),
        embedding_device=str(model.get_input_embeddings().weight.device),
        gpu_memory_gib=round(torch.cuda.memory_allocated() / 2**30, 3) if torch.cuda.is_available() else 0,
    )
    loaded_weights = stages.run("loaded weights are the checkpoint's", weights_match_checkpoint, model, tiny)
    if loaded_weights:
        stages.note("loaded weights are the checkpoint's", **loaded_weights)
    from helpers import export

    if not exports_only:
        train_and_export(stages, model, tokenizer, config, pool, generate_first)

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # stand in for a long training: adapters that change the model clearly
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_((torch.randn(parameter.shape, generator=generator) * 0.05).to(parameter))
    for fmt in export.FORMATS:
        path = work / f"random-{fmt}"
        exported = stages.run(
            f"export {fmt} with random adapters", export.export_model, model, tokenizer, config, fmt, path
        )
        if exported is not None:
            stages.note(f"export {fmt} with random adapters", **check_facts(exported))

    def dropped_experts_check() -> dict[str, Any]:
        from safetensors.torch import load_file, save_file

        merged = work / "random-merged_16bit"
        lossy = work / "lossy-merged"
        shutil.copytree(merged, lossy)
        base = {}
        for shard in sorted(Path(tiny).glob("*.safetensors")):
            base.update(load_file(shard))
        changed = []
        for shard in sorted(lossy.glob("*.safetensors")):
            tensors = load_file(shard)
            for name in tensors:
                if "mlp.experts" in name and name.endswith("proj") and name in base:
                    tensors[name] = base[name].to(tensors[name].dtype)
                    changed.append(name)
            save_file(tensors, shard, metadata={"format": "pt"})
        check = export.verify_export(model, tokenizer, config, "merged_16bit", lossy)
        return {"replaced": changed, "verdict": check.verdict, "mismatch": round(check.mismatch, 4)}

    dropped = stages.run("check catches a merge without the experts' deltas", dropped_experts_check)
    if dropped:
        stages.note("check catches a merge without the experts' deltas", **dropped)

    def unsloth_mxfp4() -> None:
        model.save_pretrained_merged(
            str(work / "unsloth-mxfp4"), tokenizer, save_method="mxfp4", install_missing_dependencies=False
        )

    stages.run("Unsloth's own save_method='mxfp4' (for the record)", unsloth_mxfp4)
    for path in sorted(work.glob("random-*")):
        stages.note(
            "export sizes (bytes)",
            **{path.name: sum(f.stat().st_size for f in path.rglob("*") if f.is_file())},
        )
    return {"mode": mode, "profile": MODES[mode], "exports_only": exports_only, "stages": stages.results}


def summary(records: list[dict[str, Any]], command: str) -> str:
    """The markdown section for benchmarks/RESULTS.md."""
    lines = [
        "## GPU smoke run (Unsloth path)",
        "",
        f"Command (on the GPU host, repository root): `{command}`",
        "",
    ]
    for record in records:
        environment = record["stages"].get("environment", {})
        lines.append(
            f"### {record['mode']} (profile `{record['profile']}`"
            f"{', --exports-only' if record.get('exports_only') else ''}) on {environment.get('gpu', '?')}, "
            f"torch {environment.get('torch', '?')}, Python {environment.get('python', '?')}"
        )
        lines.append("")
        lines.append("| stage | ok | seconds | facts |")
        lines.append("|---|---|---|---|")
        for name, facts in record["stages"].items():
            if name == "environment":
                continue
            extra = {key: value for key, value in facts.items() if key not in ("ok", "seconds")}
            text = (
                "; ".join(f"{key}: {value}" for key, value in extra.items())
                .replace("|", "/")
                .replace("\n", " ")
            )
            ok = {True: "yes", False: "**no**"}.get(facts.get("ok"), "")
            lines.append(f"| {name} | {ok} | {facts.get('seconds', '')} | {text[:700]} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-smoke-out", help="folder for the JSON records and the summary")
    parser.add_argument(
        "--mode", choices=sorted(MODES), help="run one mode in this process (default: each in a child)"
    )
    parser.add_argument("--modes", default=",".join(MODES), help="modes the driver runs, comma-separated")
    parser.add_argument("--exports-only", action="store_true", help="skip generation and training")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training setting, e.g. gradient_checkpointing=true",
    )
    parser.add_argument(
        "--train-first", action="store_true", help="train without generating strategies before training"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.mode:
        overrides = dict(pair.split("=", 1) for pair in args.set)
        record = run_mode(args.mode, out, args.exports_only, not args.train_first, overrides)
        record["settings"] = {**MODE_SETTINGS.get(args.mode, {}), **overrides}
        (out / f"gpu_smoke-{args.mode}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        return 0
    records = []
    for mode in args.modes.split(","):
        flags = ["--exports-only"] * args.exports_only + ["--train-first"] * args.train_first
        flags += [item for pair in args.set for item in ("--set", pair)]
        child = subprocess.run(
            [sys.executable, __file__, "--out", str(out), "--mode", mode, *flags], check=False
        )
        path = out / f"gpu_smoke-{mode}.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
        else:
            records.append(
                {
                    "mode": mode,
                    "profile": MODES[mode],
                    "stages": {"child process": {"ok": False, "error": f"exit {child.returncode}"}},
                }
            )
    command = (
        "export PYTHONPATH=$PWD/.gpu-site:$PWD PYTHONUNBUFFERED=1; python benchmarks/gpu_smoke.py --out $OUT"
    )
    text = summary(records, command)
    (out / "gpu_smoke.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
