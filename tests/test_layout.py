"""gpt-oss expert layouts: stacked (transformers) <-> per-expert (Unsloth's 4-bit loader), losslessly."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from helpers import export, layout, mxfp4
from helpers.config import make_config
from helpers.layout import LayoutError, convert_checkpoint, expert_layout, per_expert_copy, tensor_names
from helpers.model import ModelLoadError, unsloth_model_path


def weights(folder):
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


@pytest.fixture(scope="module")
def per_expert_dir(tiny_model_dir, tmp_path_factory):
    return convert_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("layout") / "per-expert", "per-expert")


def test_tensor_names_come_from_the_headers(tiny_model_dir):
    names = tensor_names(tiny_model_dir)
    assert names["model.layers.0.mlp.experts.gate_up_proj"] == "model.safetensors"
    assert "model.layers.1.self_attn.q_proj.weight" in names


def test_layouts_are_recognised(tiny_model_dir, per_expert_dir, tmp_path):
    assert expert_layout(tiny_model_dir) == "stacked"
    assert expert_layout(per_expert_dir) == "per-expert"
    assert expert_layout(tmp_path) is None


def test_per_expert_names_and_shapes_are_unsloths(tiny_model_dir, per_expert_dir):
    """The names and shapes of unsloth_zoo's GptOssExpertsBnb4bit (nn.Linear per expert) and router.linear."""
    config = json.loads((tiny_model_dir / "config.json").read_text())
    hidden, inter, experts = config["hidden_size"], config["intermediate_size"], config["num_local_experts"]
    tensors = weights(per_expert_dir)
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}.mlp"
        for e in range(experts):
            assert tensors[f"{prefix}.experts.gate_up_projs.{e}.weight"].shape == (2 * inter, hidden)
            assert tensors[f"{prefix}.experts.gate_up_projs.{e}.bias"].shape == (2 * inter,)
            assert tensors[f"{prefix}.experts.down_projs.{e}.weight"].shape == (hidden, inter)
            assert tensors[f"{prefix}.experts.down_projs.{e}.bias"].shape == (hidden,)
        assert tensors[f"{prefix}.router.linear.weight"].shape == (experts, hidden)
        assert tensors[f"{prefix}.router.linear.bias"].shape == (experts,)
    assert not [name for name in tensors if name.endswith(("gate_up_proj", "down_proj", "router.weight"))]
    assert len(tensors) == len(weights(tiny_model_dir)) + config["num_hidden_layers"] * (4 * experts - 4)


def test_a_per_expert_linear_computes_what_the_stacked_expert_does(tiny_model_dir, per_expert_dir):
    stacked, per_expert = weights(tiny_model_dir), weights(per_expert_dir)
    x = torch.randn(5, stacked["model.layers.0.mlp.experts.gate_up_proj"].shape[1])
    for e in range(4):
        prefix = "model.layers.0.mlp.experts"
        expected = x @ stacked[f"{prefix}.gate_up_proj"][e] + stacked[f"{prefix}.gate_up_proj_bias"][e]
        linear = torch.nn.functional.linear(
            x,
            per_expert[f"{prefix}.gate_up_projs.{e}.weight"],
            per_expert[f"{prefix}.gate_up_projs.{e}.bias"],
        )
        torch.testing.assert_close(linear, expected)
    assert torch.equal(
        per_expert["model.layers.1.mlp.router.linear.weight"], stacked["model.layers.1.mlp.router.weight"]
    )


def test_other_tensors_and_files_are_copied_unchanged(tiny_model_dir, per_expert_dir):
    stacked, per_expert = weights(tiny_model_dir), weights(per_expert_dir)
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert torch.equal(per_expert[name], stacked[name])
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (per_expert_dir / name).read_bytes() == (tiny_model_dir / name).read_bytes()


def test_the_round_trip_is_exact_and_loads_as_the_original(tiny_model_dir, per_expert_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    back = convert_checkpoint(per_expert_dir, tmp_path / "back", "stacked", shard_bytes=200_000)
    assert len(list(back.glob("*.safetensors"))) > 1  # sharded, with an index
    assert (back / "model.safetensors.index.json").is_file()
    original, restored = weights(tiny_model_dir), weights(back)
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[name], restored[name]) for name in original)
    ids = torch.tensor([[1, 5, 9, 200, 31]])
    logits = [
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(ids).logits
        for folder in (tiny_model_dir, back)
    ]
    assert torch.equal(logits[0], logits[1])


def test_an_mxfp4_checkpoint_is_unpacked_per_expert(tiny_model_dir, tmp_path):
    packed = tmp_path / "mxfp4"
    export.convert_to_mxfp4(tiny_model_dir, packed)
    assert expert_layout(packed) == "mxfp4"
    out = convert_checkpoint(packed, tmp_path / "per-expert", "per-expert")
    source, tensors = weights(packed), weights(out)
    unpacked = mxfp4.dequantize_mxfp4(
        source["model.layers.1.mlp.experts.down_proj_blocks"],
        source["model.layers.1.mlp.experts.down_proj_scales"],
    )
    assert torch.equal(tensors["model.layers.1.mlp.experts.down_projs.2.weight"].float(), unpacked[2].t())
    assert tensors["model.layers.1.mlp.experts.down_projs.2.weight"].dtype == torch.bfloat16
    assert "quantization_config" not in json.loads((out / "config.json").read_text())


def test_wrong_sources_and_destinations_are_refused(tiny_model_dir, per_expert_dir, tmp_path):
    with pytest.raises(LayoutError, match="per-expert layout: converting to the per-expert layout needs"):
        convert_checkpoint(per_expert_dir, tmp_path / "x", "per-expert")
    with pytest.raises(
        LayoutError, match="stacked layout: converting to the stacked layout needs a per-expert"
    ):
        convert_checkpoint(tiny_model_dir, tmp_path / "x", "stacked")
    with pytest.raises(LayoutError, match="no gpt-oss experts"):
        convert_checkpoint(tmp_path, tmp_path / "x", "per-expert")
    with pytest.raises(LayoutError, match="already exists"):
        convert_checkpoint(tiny_model_dir, per_expert_dir, "per-expert")
    with pytest.raises(LayoutError, match="unknown layout"):
        convert_checkpoint(tiny_model_dir, tmp_path / "x", "interleaved")


def test_an_interrupted_conversion_leaves_nothing_behind(tiny_model_dir, tmp_path, monkeypatch):
    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(layout, "write_shards", fail)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(tiny_model_dir, tmp_path / "out", "per-expert")
    assert list(tmp_path.iterdir()) == []


def test_the_per_expert_copy_is_made_once_and_remade_when_the_source_changes(
    tiny_model_dir, tmp_path, capsys
):
    import shutil

    source = tmp_path / "model"
    shutil.copytree(tiny_model_dir, source)
    copy = per_expert_copy(source)
    assert copy == tmp_path / "model-per-expert" and expert_layout(copy) == "per-expert"
    assert "writing a per-expert copy" in capsys.readouterr().out
    written = (copy / "model.safetensors").stat().st_mtime_ns
    assert per_expert_copy(source) == copy
    assert (copy / "model.safetensors").stat().st_mtime_ns == written
    assert "writing" not in capsys.readouterr().out
    (source / "config.json").write_text((source / "config.json").read_text() + "\n")
    os.utime(source / "config.json", (1, 1))
    per_expert_copy(source)
    assert "writing a per-expert copy" in capsys.readouterr().out


def test_a_foreign_folder_in_the_way_is_not_deleted(tiny_model_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(LayoutError, match="not a per-expert copy made here"):
        per_expert_copy(tiny_model_dir, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_unsloth_loads_a_local_stacked_checkpoint_in_4bit_through_its_per_expert_copy(
    tiny_model_dir, tmp_path
):
    import shutil

    source = tmp_path / "model"
    shutil.copytree(tiny_model_dir, source)
    four_bit = make_config("dgx-spark", model_name=str(source))
    assert unsloth_model_path(four_bit) == str(tmp_path / "model-per-expert")
    sixteen_bit = make_config("h100", model_name=str(source))
    assert unsloth_model_path(sixteen_bit) == str(source)
    assert unsloth_model_path(make_config("dgx-spark")) == "unsloth/gpt-oss-20b"
    per_expert = make_config("dgx-spark", model_name=str(tmp_path / "model-per-expert"))
    assert unsloth_model_path(per_expert) == str(tmp_path / "model-per-expert")


def test_an_unwritable_place_for_the_copy_is_a_load_error(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(layout.os, "access", lambda path, mode: False)
    with pytest.raises(ModelLoadError, match="not writable.*load_in_4bit=false"):
        unsloth_model_path(make_config("dgx-spark", model_name=str(tiny_model_dir)))


def test_a_merged_export_in_the_per_expert_layout_is_restacked(tiny_model_dir, per_expert_dir, tmp_path):
    """Unsloth merges a model loaded from a per-expert copy into that layout; the export is the stacked one."""
    import shutil

    class UnslothLike:
        def save_pretrained_merged(self, path, tokenizer, save_method):
            assert save_method == "merged_16bit"
            shutil.copytree(per_expert_dir, path)

    path = tmp_path / "merged"
    export.save_merged_16bit(UnslothLike(), None, make_config("dgx-spark").training, path)
    assert expert_layout(path) == "stacked"
    original, saved = weights(tiny_model_dir), weights(path)
    assert original.keys() == saved.keys() and all(torch.equal(original[k], saved[k]) for k in original)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert not export.restack_experts(path)  # already stacked: nothing to do


def test_the_benchmark_builds_the_same_random_model_in_either_layout(tmp_path, monkeypatch):
    """benchmarks/make_full_shape.py --layout per-expert (the 4-bit throughput runs) is the stacked model, rewritten."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "make_full_shape.py"
    spec = importlib.util.spec_from_file_location("make_full_shape", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_full_shape", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    module.build_checkpoint(tmp_path / "stacked", tiny=True, device="cpu")
    module.build_checkpoint(tmp_path / "per-expert", tiny=True, device="cpu", layout="per-expert")
    assert expert_layout(tmp_path / "per-expert") == "per-expert"
    back = convert_checkpoint(tmp_path / "per-expert", tmp_path / "back", "stacked")
    stacked, restored = weights(tmp_path / "stacked"), weights(back)
    assert stacked.keys() == restored.keys() and all(torch.equal(stacked[k], restored[k]) for k in stacked)
