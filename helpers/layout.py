"""gpt-oss checkpoints in the two expert layouts: stacked (transformers) and per-expert (Unsloth 4-bit).

transformers stores each layer's experts as stacked tensors, `[experts, in, out]`:

    model.layers.L.mlp.experts.gate_up_proj        [E, hidden, 2 * intermediate]  (+ gate_up_proj_bias [E, 2I])
    model.layers.L.mlp.experts.down_proj           [E, intermediate, hidden]      (+ down_proj_bias [E, hidden])
    model.layers.L.mlp.router.weight / .bias

(and the released MXFP4 checkpoints pack `gate_up_proj`/`down_proj` as `*_blocks`/`*_scales`).
Unsloth loads gpt-oss in 4-bit with one `nn.Linear` per expert, so that bitsandbytes can quantize
them, and a router whose weights sit under `router.linear`, which is how its pre-quantized
`unsloth/gpt-oss-20b` checkpoints are written:

    model.layers.L.mlp.experts.gate_up_projs.e.weight [2I, hidden]   (.bias [2I])
    model.layers.L.mlp.experts.down_projs.e.weight    [hidden, I]    (.bias [hidden])
    model.layers.L.mlp.router.linear.weight / .bias

Given a stacked checkpoint, that loader finds none of its keys and leaves the experts and the router
randomly initialised (the GPU smoke run in benchmarks/RESULTS.md). `convert_checkpoint` rewrites a
local checkpoint from one layout to the other, tensor for tensor (each per-expert weight is its
stacked slice transposed, so nothing is rounded): `helpers.model.load_model` uses it to load a
local stacked checkpoint in 4-bit, and `helpers.export` to turn a merged export of such a model back
into the stacked layout everyone else reads. It streams: one group of tensors in memory at a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from helpers.mxfp4 import dequantize_mxfp4

LAYOUTS = ("stacked", "per-expert")
"""The layouts `convert_checkpoint` writes."""

SHARD_BYTES = 4 * 2**30
"""Largest safetensors shard written (a 20b checkpoint becomes about ten files)."""

EXPERT_PARAMETERS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
"""gpt-oss expert weights as transformers stores them (stacked, one tensor per layer and projection)."""


def is_expert_tensor(name: str) -> bool:
    """Whether a checkpoint tensor is a stacked expert weight (what MXFP4 packs and LoRA reaches by parameter)."""
    return name.endswith(EXPERT_PARAMETERS)


STACKED = re.compile(
    r"^(?P<prefix>.*\.mlp\.experts)\.(?P<proj>gate_up_proj|down_proj)(?P<suffix>|_bias|_blocks|_scales)$"
)
PER_EXPERT = re.compile(
    r"^(?P<prefix>.*\.mlp\.experts)\.(?P<proj>gate_up_projs|down_projs)\.(?P<index>\d+)\.(?P<kind>weight|bias)$"
)
ROUTER = re.compile(r"^(?P<prefix>.*\.mlp\.router)\.(?P<kind>weight|bias)$")
ROUTER_LINEAR = re.compile(r"^(?P<prefix>.*\.mlp\.router)\.linear\.(?P<kind>weight|bias)$")

NOT_COPIED = frozenset({"model.safetensors.index.json"})
"""Files of the source folder that the writer makes itself instead of copying."""


class LayoutError(RuntimeError):
    """A checkpoint that cannot be converted (not gpt-oss, incomplete, unwritable); the message says why."""


def tensor_names(folder: str | os.PathLike) -> dict[str, str]:
    """Each tensor of a local safetensors checkpoint and the shard file holding it (headers only)."""
    from safetensors import safe_open

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return dict(json.loads(index.read_text())["weight_map"])
    names: dict[str, str] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as file:
            names.update(dict.fromkeys(file.keys(), shard.name))
    return names


def expert_layout(folder: str | os.PathLike) -> str | None:
    """`stacked`, `mxfp4` (stacked and packed), `per-expert`, or None for a checkpoint without gpt-oss experts."""
    names = tensor_names(folder)
    if any(name.endswith(".mlp.experts.gate_up_proj_blocks") for name in names):
        return "mxfp4"
    if any(name.endswith(".mlp.experts.gate_up_proj") for name in names):
        return "stacked"
    if any(PER_EXPERT.match(name) for name in names):
        return "per-expert"
    return None


class TensorSource:
    """Tensors by name, in order, loaded when asked for: a model's state dict (`of`) or a checkpoint (`checkpoint`)."""

    def __init__(self, names: Iterable[str], load: Callable[[str], Any]) -> None:
        self.names = dict.fromkeys(names)
        self.load = load

    @classmethod
    def of(cls, tensors: dict[str, Any]) -> TensorSource:
        return cls(tensors, tensors.__getitem__)

    @classmethod
    def checkpoint(cls, folder: Path) -> TensorSource:
        """A local safetensors checkpoint, each shard opened once."""
        from safetensors import safe_open

        shards = tensor_names(folder)
        files = {shard: safe_open(str(folder / shard), framework="pt") for shard in set(shards.values())}
        return cls(shards, lambda name: files[shards[name]].get_tensor(name))

    def get(self, name: str) -> Any:
        if name not in self.names:
            raise LayoutError(f"tensor {name} is missing")
        return self.load(name)


def to_per_expert(reader: TensorSource) -> Iterator[tuple[str, Any]]:
    """The per-expert layout's tensors, in the source's order (stacked or MXFP4 source)."""
    for name in reader.names:
        stacked, router = STACKED.match(name), ROUTER.match(name)
        if stacked:
            prefix, proj, suffix = stacked["prefix"], stacked["proj"], stacked["suffix"]
            if suffix == "_scales":
                continue  # read with its _blocks
            if suffix == "_blocks":
                tensor = dequantize_mxfp4(reader.get(name), reader.get(f"{prefix}.{proj}_scales"))
            else:
                tensor = reader.get(name)
            kind = "bias" if suffix == "_bias" else "weight"
            for index in range(tensor.shape[0]):
                part = tensor[index].t() if kind == "weight" else tensor[index]
                yield f"{prefix}.{proj}s.{index}.{kind}", part.contiguous()
        elif router:
            yield f"{router['prefix']}.linear.{router['kind']}", reader.get(name)
        else:
            yield name, reader.get(name)


def to_stacked(reader: TensorSource) -> Iterator[tuple[str, Any]]:
    """The stacked layout's tensors: each expert group at the place of its first expert."""
    import torch

    groups: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    for name in reader.names:
        match = PER_EXPERT.match(name)
        if match:
            key = (match["prefix"], match["proj"], match["kind"])
            groups.setdefault(key, []).append((int(match["index"]), name))
    done: set[tuple[str, str, str]] = set()
    for name in reader.names:
        expert, router = PER_EXPERT.match(name), ROUTER_LINEAR.match(name)
        if expert:
            key = (expert["prefix"], expert["proj"], expert["kind"])
            if key in done:
                continue
            done.add(key)
            members = sorted(groups[key])
            if [index for index, _ in members] != list(range(len(members))):
                raise LayoutError(f"{key[0]}.{key[1]}: the experts' {key[2]} tensors are not numbered 0..N-1")
            parts = [reader.get(member) for _, member in members]
            if key[2] == "weight":
                parts = [part.t() for part in parts]
            suffix = "" if key[2] == "weight" else "_bias"
            yield f"{key[0]}.{key[1][:-1]}{suffix}", torch.stack(parts).contiguous()
        elif router:
            yield f"{router['prefix']}.{router['kind']}", reader.get(name)
        else:
            yield name, reader.get(name)


def write_shards(tensors: Iterable[tuple[str, Any]], folder: Path, shard_bytes: int) -> int:
    """Save tensors as safetensors shards of at most `shard_bytes` (with an index when several); their count."""
    from safetensors.torch import save_file

    written: list[str] = []
    shard_of: dict[str, int] = {}
    current: dict[str, Any] = {}
    size = 0

    def flush() -> None:
        name = f"part-{len(written):05d}.safetensors"
        save_file(current, str(folder / name), metadata={"format": "pt"})
        written.append(name)

    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > shard_bytes:
            flush()
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
        shard_of[name] = len(written)
    if current or not written:
        flush()
    count = len(written)
    final = (
        ["model.safetensors"]
        if count == 1
        else [f"model-{index + 1:05d}-of-{count:05d}.safetensors" for index in range(count)]
    )
    for old, new in zip(written, final, strict=True):
        (folder / old).rename(folder / new)
    if count > 1:
        index = {"metadata": {}, "weight_map": {name: final[shard] for name, shard in shard_of.items()}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return count


def copy_other_files(source: Path, destination: Path, skip: frozenset[str] = NOT_COPIED) -> None:
    """Copy a checkpoint's files other than its weights (config, tokenizer, template) unless named in `skip`."""
    for extra in source.iterdir():
        if extra.is_file() and extra.suffix != ".safetensors" and extra.name not in skip:
            shutil.copy2(extra, destination / extra.name)


def convert_checkpoint(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    layout: str,
    shard_bytes: int = SHARD_BYTES,
) -> Path:
    """Write `source` (a local gpt-oss checkpoint) at `destination` with its experts in `layout`.

    `per-expert` accepts a stacked or an MXFP4 source (MXFP4 experts are unpacked to bfloat16);
    `stacked` accepts a per-expert source. Every other tensor and file is copied unchanged, except
    that an MXFP4 source's `quantization_config` is dropped. The folder is written next to
    `destination` and renamed into place at the end, so an interrupted conversion leaves no
    half-written checkpoint behind. Raises `LayoutError` for a source of another kind.
    """
    import torch

    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    source, destination = Path(source), Path(destination)
    found = expert_layout(source)
    accepted = ("stacked", "mxfp4") if layout == "per-expert" else ("per-expert",)
    if found not in accepted:
        raise LayoutError(
            f"{source} has {'no gpt-oss experts' if found is None else f'its experts in the {found} layout'}: "
            f"converting to the {layout} layout needs a {' or '.join(accepted)} checkpoint"
        )
    if destination.exists():
        raise LayoutError(f"{destination} already exists; remove it or choose another folder")
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        reader = TensorSource.checkpoint(source)
        tensors = to_per_expert(reader) if layout == "per-expert" else to_stacked(reader)
        if found == "mxfp4":
            tensors = ((name, t.to(torch.bfloat16) if t.is_floating_point() else t) for name, t in tensors)
        write_shards(tensors, staging, shard_bytes)
        copy_other_files(source, staging)
        if found == "mxfp4":
            config = json.loads((staging / "config.json").read_text())
            config.pop("quantization_config", None)
            config["dtype"] = "bfloat16"
            (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def source_stamp(folder: str | os.PathLike) -> dict[str, Any]:
    """What identifies a checkpoint's weights cheaply: each file's name, size and modification time."""
    folder = Path(folder).resolve()
    return {
        "source": str(folder),
        "files": sorted(
            [path.name, path.stat().st_size, int(path.stat().st_mtime)]
            for path in folder.iterdir()
            if path.is_file()
        ),
    }


def per_expert_copy(source: str | os.PathLike, destination: str | os.PathLike | None = None) -> Path:
    """A per-expert copy of a stacked or MXFP4 checkpoint for Unsloth's 4-bit loader, made once and reused.

    Written to `destination`, by default `<source>-per-expert` beside it, with a stamp of the source
    files: a copy whose stamp no longer matches (the source was overwritten) is made again.
    """
    source = Path(source)
    destination = (
        Path(destination) if destination is not None else source.with_name(source.name + "-per-expert")
    )
    stamp_file = destination / "converted_from.json"
    stamp = source_stamp(source)
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return destination
    if destination.exists():
        if not stamp_file.is_file():
            raise LayoutError(
                f"{destination} exists but is not a per-expert copy made here (no converted_from.json); "
                "move it away so the copy can be written there"
            )
        shutil.rmtree(destination)
    if not os.access(destination.parent if destination.parent.exists() else Path.cwd(), os.W_OK):
        raise LayoutError(
            f"cannot write the per-expert copy of {source} to {destination.parent} (not writable): "
            "copy the checkpoint somewhere writable, or load it in 16-bit (load_in_4bit=false)"
        )
    size = sum(path.stat().st_size for path in source.glob("*.safetensors"))
    print(
        f"Unsloth's 4-bit loader reads gpt-oss experts one module per expert: writing a per-expert copy of "
        f"{source} to {destination} ({size / 2**30:.1f} GiB of weights; once, reused afterwards)",
        flush=True,
    )
    convert_checkpoint(source, destination, "per-expert")
    stamp_file.write_text(json.dumps(stamp, indent=2) + "\n")
    return destination
