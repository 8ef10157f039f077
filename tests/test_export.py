"""Exports of the tiny model (LoRA, merged 16-bit, MXFP4), and the reload check that catches lost deltas."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import export, mxfp4
from helpers.config import make_config
from helpers.export import ExportError
from helpers.model import load_model


def randomise_adapters(model, std=0.05, seed=1):
    """Stand in for a long training: non-zero LoRA B matrices, so the adapter changes the model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """The three exports of a tiny model whose adapters were given random weights."""
    output_dir = tmp_path_factory.mktemp("exports")
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir), output_dir=str(output_dir))
    model, tokenizer = load_model(config)
    randomise_adapters(model)
    results = {fmt: export.export_model(model, tokenizer, config, fmt) for fmt in export.FORMATS}
    return {
        "config": config,
        "model": model,
        "tokenizer": tokenizer,
        "results": results,
        "base": tiny_model_dir,
    }


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_each_export_is_verified(exported, fmt):
    result = exported["results"][fmt]
    assert result.check.verdict == "verified", result.check.message
    assert result.check.mismatch <= export.RELATIVE_TOLERANCE[fmt]
    assert result.path.endswith(f"export-{fmt}")


def test_lora_export_is_the_adapter_alone(exported):
    names = {path.name for path in Path(exported["results"]["lora"].path).iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= names
    assert "model.safetensors" not in names


def copy_export(exported, fmt, destination):
    folder = destination / fmt
    shutil.copytree(exported["results"][fmt].path, folder)
    return folder


def drop_deltas(folder, base_dir, part):
    """Put the base model's tensors back for one part: what a merge that lost those LoRA deltas writes."""
    tensors = load_file(folder / "model.safetensors")
    base = load_file(base_dir / "model.safetensors")
    for name in tensors:
        if part in name and name.endswith(("proj", "proj.weight")):
            tensors[name] = base[name].to(tensors[name].dtype)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("part", ["mlp.experts", "self_attn"])
def test_a_merge_that_lost_deltas_fails_the_check(exported, tmp_path, part):
    folder = copy_export(exported, "merged_16bit", tmp_path)
    drop_deltas(folder, exported["base"], part)
    check = export.verify_export(
        exported["model"], exported["tokenizer"], exported["config"], "merged_16bit", folder
    )
    assert check.verdict == "failed"
    assert check.mismatch > 2 * export.RELATIVE_TOLERANCE["merged_16bit"]
    assert "does not carry the trained weights" in check.message


@pytest.mark.parametrize("fmt", ["merged_16bit", "mxfp4"])
def test_export_model_raises_when_the_merge_lost_the_experts(exported, tmp_path, monkeypatch, fmt):
    def lossy_merge(model, tokenizer, training, path):
        shutil.copytree(exported["results"]["merged_16bit"].path, path, dirs_exist_ok=True)
        drop_deltas(path, exported["base"], "mlp.experts")

    monkeypatch.setattr(export, "save_merged_16bit", lossy_merge)
    with pytest.raises(export.ExportVerificationError, match="MoE experts"):
        export.export_model(
            exported["model"], exported["tokenizer"], exported["config"], fmt, tmp_path / "lossy"
        )


def test_an_untrained_adapter_is_inconclusive(tiny_model_dir, tmp_path):
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir), output_dir=str(tmp_path))
    model, tokenizer = load_model(config)  # LoRA B starts at zero: the adapter changes nothing
    result = export.export_model(model, tokenizer, config, "lora")
    assert result.check.verdict == "inconclusive"
    assert result.check.effect == 0.0


def test_mxfp4_checkpoint_is_gpt_oss_layout(exported):
    folder = Path(exported["results"]["mxfp4"].path)
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    tensors = load_file(folder / "model.safetensors")
    blocks = tensors["model.layers.0.mlp.experts.gate_up_proj_blocks"]
    scales = tensors["model.layers.0.mlp.experts.gate_up_proj_scales"]
    # [experts, 2 * intermediate, hidden / 32, 16] and [experts, 2 * intermediate, hidden / 32]
    assert (blocks.dtype, tuple(blocks.shape)) == (torch.uint8, (4, 128, 2, 16))
    assert (scales.dtype, tuple(scales.shape)) == (torch.uint8, (4, 128, 2))
    assert "model.layers.0.mlp.experts.gate_up_proj" not in tensors
    assert tensors["model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16


def test_mxfp4_packing_matches_transformers_unpacking():
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    weight = torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(0)) * 0.02
    blocks, scales = mxfp4.quantize_mxfp4(weight)
    unpacked = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    assert torch.equal(unpacked, mxfp4.dequantize_mxfp4(blocks, scales))
    assert unpacked.shape == weight.shape
    # every value lands within one FP4 step of the largest kind (2 x scale) of the original
    step = torch.exp2(scales.float() - 127).repeat_interleave(32, dim=-1).transpose(1, 2)
    assert bool(((unpacked - weight).abs() <= step).all())


def test_mxfp4_keeps_exact_fp4_values_exactly():
    values = torch.tensor(mxfp4.FP4_VALUES * 4).reshape(1, 32, 1) * 0.25  # one block, one output column
    assert torch.equal(mxfp4.dequantize_mxfp4(*mxfp4.quantize_mxfp4(values)), values)


def test_mxfp4_needs_blocks_of_32():
    with pytest.raises(mxfp4.MXFP4Error, match="blocks of 32"):
        mxfp4.quantize_mxfp4(torch.zeros(1, 40, 8))


def test_unknown_format_is_refused(exported):
    with pytest.raises(ExportError, match="unknown export format 'gguf'"):
        export.export_model(exported["model"], exported["tokenizer"], exported["config"], "gguf")


def test_mxfp4_without_expert_tensors_says_to_export_merged(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    save_file({"model.embed_tokens.weight": torch.zeros(4, 4)}, merged / "model.safetensors")
    (merged / "config.json").write_text("{}")
    with pytest.raises(ExportError, match="no stacked gpt-oss expert tensors.*merged_16bit"):
        export.convert_to_mxfp4(merged, tmp_path / "out")


@pytest.mark.slow
def test_the_check_can_load_the_export_in_a_fresh_process(exported):
    """What a run with Unsloth loaded does (away from Unsloth's patches): same numbers as in-process."""
    args = (
        exported["model"],
        exported["tokenizer"],
        exported["config"],
        "mxfp4",
        exported["results"]["mxfp4"].path,
    )
    isolated = export.verify_export(*args, fresh_process=True)
    here = export.verify_export(*args, fresh_process=False)
    assert isolated.mismatch == pytest.approx(here.mismatch, abs=1e-5)
    assert isolated.effect == pytest.approx(here.effect, abs=1e-5)


def test_mxfp4_of_a_small_change_is_verified_and_says_what_rounding_lost(tiny_model_dir, tmp_path):
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir), output_dir=str(tmp_path))
    model, tokenizer = load_model(config)
    randomise_adapters(model, std=0.002)  # a short training: below 4-bit resolution for the experts
    result = export.export_model(model, tokenizer, config, "mxfp4")
    assert result.check.verdict == "verified"
    assert "does not survive it" in result.check.message


def test_an_mxfp4_file_that_does_not_unpack_to_its_source_fails(exported, tmp_path):
    folder = copy_export(exported, "mxfp4", tmp_path)
    tensors = load_file(folder / "model.safetensors")
    name = "model.layers.0.mlp.experts.gate_up_proj_blocks"
    tensors[name] = tensors[name].flip(0).contiguous()  # experts in the wrong order
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with tempfile.TemporaryDirectory() as merged:
        shutil.copytree(exported["results"]["merged_16bit"].path, merged, dirs_exist_ok=True)
        check = export.verify_mxfp4_export(
            exported["model"], exported["tokenizer"], exported["config"], folder, merged
        )
    assert check.verdict == "failed"
    assert "does not load back as the merged model" in check.message


def test_a_float32_merged_checkpoint_packs_as_it_loads_back(tiny_model_dir, tmp_path):
    """Unsloth keeps a float32 base's precision in merged_16bit; the GPU smoke run's packing check caught it."""
    training = make_config("cpu-tiny", model_name=str(tiny_model_dir)).training
    export.convert_to_mxfp4(tiny_model_dir, tmp_path / "mxfp4")  # the tiny model is saved in float32
    ids = torch.tensor([[1, 5, 9, 200, 31, 44, 77, 12]])
    packed, rounded = export.export_logits("mxfp4", tmp_path / "mxfp4", training, ids, str(tiny_model_dir))
    assert float((packed - rounded).abs().max() / rounded.abs().max()) <= export.PACKING_TOLERANCE


def test_mxfp4_of_a_model_without_experts_is_refused_before_anything_is_written(tmp_path):
    from types import SimpleNamespace

    llama = SimpleNamespace(config=SimpleNamespace(model_type="llama"))
    config = make_config("cpu", output_dir=str(tmp_path))
    with pytest.raises(ExportError, match=r"\(llama\) has no experts to pack: export lora or merged_16bit"):
        export.export_model(llama, None, config, "mxfp4")
    assert list(tmp_path.iterdir()) == []


# --- no lost work ----------------------------------------------------------------------------------


def adapter_bytes(folder):
    return (Path(folder) / "adapter_model.safetensors").read_bytes()


@pytest.fixture
def trained_export(exported, tmp_path):
    """A lora export stamped as holding 5 training steps, in a folder of its own."""
    from helpers.model import set_trained_steps

    set_trained_steps(exported["model"], 5)
    try:
        result = export.export_model(
            exported["model"], exported["tokenizer"], exported["config"], "lora", tmp_path / "export-lora"
        )
    finally:
        set_trained_steps(exported["model"], 0)
    assert export.read_stamp(result.path)["steps"] == 5 and result.steps == 5
    return Path(result.path)


def test_an_export_never_replaces_one_with_more_training_steps(tiny_model_dir, trained_export, exported):
    before = adapter_bytes(trained_export)
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir))
    fresh, tokenizer = load_model(config)  # step 0: what a re-run notebook used to export over a run
    with pytest.raises(ExportError, match=r"holds a lora export of step 5 .*this model holds step 0"):
        export.export_model(fresh, tokenizer, config, "lora", trained_export)
    assert adapter_bytes(trained_export) == before and export.read_stamp(trained_export)["steps"] == 5
    assert not trained_export.with_name("export-lora.partial").exists()


def test_a_model_with_as_many_steps_replaces_the_export(trained_export, exported):
    from helpers.model import set_trained_steps

    set_trained_steps(exported["model"], 5)
    try:
        result = export.export_model(
            exported["model"], exported["tokenizer"], exported["config"], "lora", trained_export, verify=False
        )
    finally:
        set_trained_steps(exported["model"], 0)
    assert (
        result.path == str(trained_export) and export.read_stamp(trained_export)["verdict"] == "not verified"
    )
    assert sorted(path.name for path in trained_export.parent.iterdir()) == ["export-lora"]


def test_a_model_whose_steps_nobody_recorded_replaces_nothing(trained_export, exported):
    from helpers.model import STEPS_ATTRIBUTE

    model = exported["model"]
    delattr(model, STEPS_ATTRIBUTE)
    try:
        with pytest.raises(ExportError, match="nothing records how many steps"):
            export.export_model(model, exported["tokenizer"], exported["config"], "lora", trained_export)
    finally:
        setattr(model, STEPS_ATTRIBUTE, 0)


def test_a_folder_without_a_stamp_is_not_written_over(exported, tmp_path):
    folder = tmp_path / "export-lora"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="no export.json"):
        export.export_model(exported["model"], exported["tokenizer"], exported["config"], "lora", folder)
    assert (folder / "notes.txt").read_text() == "mine"


def test_an_export_that_fails_its_check_is_kept_aside_and_the_earlier_one_stays(
    trained_export, exported, monkeypatch
):
    from helpers.model import set_trained_steps

    before = adapter_bytes(trained_export)
    failed = export.ExportCheck("failed", 1.0, 0.9, 0.02, "does not carry the trained weights")
    monkeypatch.setattr(export, "verify_export", lambda *args, **kwargs: failed)
    set_trained_steps(exported["model"], 7)
    try:
        with pytest.raises(
            export.ExportVerificationError, match="kept in .*export-lora.failed.* is unchanged"
        ):
            export.export_model(
                exported["model"], exported["tokenizer"], exported["config"], "lora", trained_export
            )
    finally:
        set_trained_steps(exported["model"], 0)
    assert adapter_bytes(trained_export) == before
    assert export.read_stamp(trained_export.with_name("export-lora.failed"))["verdict"] == "failed"


def test_a_checkpoint_loads_with_its_steps(tiny_model_dir, tmp_path):
    from helpers.model import trained_steps

    config = make_config("cpu-tiny", model_name=str(tiny_model_dir), output_dir=str(tmp_path))
    model, tokenizer = load_model(config)
    checkpoint = tmp_path / "checkpoint-12"
    model.save_pretrained(checkpoint)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 12}))
    loaded, _ = load_model(config, adapter=checkpoint)
    assert trained_steps(model) == 0 and trained_steps(loaded) == 12
    with pytest.raises(Exception, match="does not exist"):
        load_model(config, adapter=tmp_path / "checkpoint-99")


def test_only_gpt_oss_has_an_mxfp4_export():
    from types import SimpleNamespace

    from helpers.export import FORMATS, format_unsupported

    llama = SimpleNamespace(config=SimpleNamespace(model_type="llama"))
    gpt_oss = SimpleNamespace(config=SimpleNamespace(model_type="gpt_oss"))
    assert [fmt for fmt in FORMATS if format_unsupported(llama, fmt)] == ["mxfp4"]
    assert "(llama) has no experts" in format_unsupported(llama, "mxfp4")
    assert not any(format_unsupported(gpt_oss, fmt) for fmt in FORMATS)
