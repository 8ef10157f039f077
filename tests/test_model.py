"""Loading: the tiny random gpt-oss, its chat template, LoRA on attention and experts, clear errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import layout, tiny_model
from helpers import model as model_module
from helpers.config import GameConfig, make_config
from helpers.model import ModelLoadError, load_model
from helpers.prompts import build_prompt, chat_messages


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny model loaded on the CPU path, with fresh LoRA adapters."""
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir))
    return load_model(config)


def test_tiny_model_is_a_small_gpt_oss_with_experts(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"]
    assert (config["num_hidden_layers"], config["num_local_experts"], config["hidden_size"]) == (2, 4, 64)
    assert config["layer_types"] == ["sliding_attention", "full_attention"]


def test_chat_template_is_harmony_with_the_reasoning_effort(tiny):
    _, tokenizer = tiny
    text = tokenizer.apply_chat_template(
        chat_messages(GameConfig()), tokenize=False, add_generation_prompt=True, reasoning_effort="high"
    )
    assert text.startswith("<|start|>system<|message|>")
    assert "Reasoning: high" in text
    assert "<|start|>user<|message|>" + build_prompt(GameConfig()) + "<|end|>" in text
    assert text.endswith("<|start|>assistant")


def test_reasoning_effort_defaults_to_medium(tiny):
    _, tokenizer = tiny
    text = tokenizer.apply_chat_template(chat_messages(GameConfig()), tokenize=False)
    assert "Reasoning: medium" in text


def test_special_tokens_are_single_tokens_and_eos_is_return(tiny):
    _, tokenizer = tiny
    for token in tiny_model.SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert tokenizer.eos_token == "<|return|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("keymap", ["bepo", "wasd"])
def test_tokenizer_round_trips_the_prompt(tiny, keymap):
    _, tokenizer = tiny
    prompt = build_prompt(GameConfig(keymap=keymap))
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert tokenizer.decode(ids) == prompt
    assert len(ids) < len(prompt) / 2  # the BPE learnt the prompt's words


def test_lora_reaches_attention_and_both_expert_tensors(tiny):
    model, _ = tiny
    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert names and all("lora_" in name for name in names)
    for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert any(f"self_attn.{part}.lora_A" in name for name in names), part
    # peft nests one ParamWrapper per targeted parameter: gate_up_proj inside, down_proj outside
    assert any("mlp.experts.base_layer.lora_A" in name for name in names)
    assert any("mlp.experts.lora_A" in name and "base_layer" not in name for name in names)


def test_lora_config_maps_mlp_names_to_expert_parameters():
    config = make_config("cpu-tiny", target_modules="q_proj,gate_proj")
    lora = model_module.lora_config(config.training)
    assert set(lora.target_modules) == {"q_proj"}
    assert list(lora.target_parameters) == list(layout.EXPERT_PARAMETERS)
    attention_only = model_module.lora_config(
        make_config("cpu-tiny", target_modules="q_proj,v_proj").training
    )
    assert not attention_only.target_parameters


def test_unknown_target_module_is_refused():
    with pytest.raises(ModelLoadError, match="not modules of this model"):
        model_module.lora_config(make_config("cpu-tiny", target_modules="q_proj,wq").training)


def test_gpu_profile_without_a_gpu_says_to_use_a_cpu_profile(monkeypatch):
    monkeypatch.setattr(model_module, "cuda_available", lambda: False)
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU.*--profile cpu\\b.*--profile cpu-tiny"):
        load_model(make_config("dgx-spark"))


def test_missing_model_folder_is_reported_not_built(tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "cuda_available", lambda: False)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(make_config("cpu-tiny", model_name=str(tmp_path / "typo")))
    assert not (tmp_path / "typo").exists()


def test_uninstalled_unsloth_on_a_gpu_says_what_to_install(monkeypatch):
    monkeypatch.setattr(model_module, "cuda_available", lambda: True)
    monkeypatch.setattr(model_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="unsloth package is not installed.*use_unsloth=false"):
        model_module.import_unsloth_if_used(make_config("h100"))


def test_cpu_never_takes_the_unsloth_path(monkeypatch):
    monkeypatch.setattr(model_module, "cuda_available", lambda: False)
    assert not model_module.import_unsloth_if_used(make_config("h100"))


def test_a_model_that_cannot_be_fetched_is_one_line(tiny_model_dir, monkeypatch):
    # transformers' own words for an unknown or unreachable hub id come as an OSError after its retries
    def unreachable(*args):
        raise OSError(
            "We couldn't connect to 'https://huggingface.co' to load the files,\nand couldn't find them"
        )

    monkeypatch.setattr(model_module, "_load_with_peft", unreachable)
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir))
    with pytest.raises(
        ModelLoadError,
        match="could not load .*: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't",
    ):
        load_model(config)


def test_a_folder_without_an_adapter_is_refused(tiny_model_dir, tmp_path):
    config = make_config("cpu-tiny", model_name=str(tiny_model_dir))
    with pytest.raises(ModelLoadError, match="holds no LoRA adapter"):
        load_model(config, adapter=tmp_path)


def test_the_tiny_model_is_deterministic(tmp_path, tiny_model_dir):
    again = tiny_model.make_tiny_model(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()


def test_lora_on_a_llama_style_model_targets_plain_linear_layers():
    lora = model_module.lora_config(make_config("cpu").training, model_type="llama")
    assert set(lora.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert not lora.target_parameters
    assert (lora.r, lora.lora_alpha) == (16, 32)


def test_the_cpu_profile_converts_its_own_folder_only(tmp_path, monkeypatch):
    converted = []
    monkeypatch.setattr(model_module, "ensure_small_model", lambda path: converted.append(path) or Path(path))
    assert model_module.ensure_local_model(make_config("cpu")) == Path("outputs/smollm2-135m-instruct")
    assert model_module.ensure_local_model(make_config("cpu", model_name=str(tmp_path / "mine"))) is None
    assert converted == ["outputs/smollm2-135m-instruct"]


def _fake_unsloth(folder: Path) -> None:
    """A stand-in `unsloth` package that, like the real one, removes TORCHINDUCTOR_CACHE_DIR on import."""
    package = folder / "unsloth"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os, json\n"
        f"json.dump({{n: os.environ.get(n) for n in {sorted(model_module.COMPILE_CACHES)!r}}}, "
        f"open({str(folder / 'seen.json')!r}, 'w'))\n"
        "os.environ.pop('TORCHINDUCTOR_CACHE_DIR', None)\n"
    )


def test_compile_caches_go_to_the_configured_folder_and_survive_unsloths_import(tmp_path, monkeypatch):
    for name in model_module.COMPILE_CACHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice wins
    _fake_unsloth(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    monkeypatch.setattr(model_module, "cuda_available", lambda: True)
    cache = tmp_path / "cache"
    assert model_module.import_unsloth_if_used(make_config("h100", compile_cache=str(cache)))
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(tmp_path / "mine"),
        "UNSLOTH_COMPILE_LOCATION": str(cache / "unsloth"),  # read when Unsloth is imported
    }
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")  # set again after the import


def test_logprob_recompute_reaches_unsloth_through_its_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("UNSLOTH_GRPO_LOGPROB_RECOMPUTE", raising=False)
    _fake_unsloth(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    monkeypatch.setattr(model_module, "cuda_available", lambda: True)
    cache = str(tmp_path / "cache")
    off = make_config("h100", compile_cache=cache, logprob_recompute=False)
    assert model_module.import_unsloth_if_used(off)
    assert "UNSLOTH_GRPO_LOGPROB_RECOMPUTE" not in os.environ  # off: nothing set
    assert make_config("h100").training.logprob_recompute  # the profile's choice (RESULTS.md)
    assert not make_config("dgx-spark").training.logprob_recompute
    assert model_module.import_unsloth_if_used(make_config("h100", compile_cache=cache))
    assert os.environ["UNSLOTH_GRPO_LOGPROB_RECOMPUTE"] == "1"


def test_an_empty_compile_cache_leaves_the_libraries_defaults(monkeypatch):
    for name in model_module.COMPILE_CACHES:
        monkeypatch.delenv(name, raising=False)
    assert model_module.use_compile_cache("") == {}
    assert not any(name in os.environ for name in model_module.COMPILE_CACHES)


def test_the_first_step_note_says_whether_the_compile_cache_is_filled(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    config = make_config("h100", compile_cache=str(cache), logprob_recompute=False)
    monkeypatch.setattr(model_module, "cuda_available", lambda: False)
    assert model_module.first_step_note(config) is None  # no GPU: no Unsloth, nothing compiles
    monkeypatch.setattr(model_module, "cuda_available", lambda: True)
    empty = model_module.first_step_note(config)
    assert empty is not None and "empty now" in empty and "several minutes" in empty
    (cache / "triton" / "abc").mkdir(parents=True)
    (cache / "triton" / "abc" / "kernel.cubin").write_bytes(b"x" * 3_000_000)
    filled = model_module.first_step_note(config)
    assert filled is not None and "(3 MB)" in filled and "about a minute" in filled
    assert "default caches" in (model_module.first_step_note(make_config("h100", compile_cache="")) or "")
    assert "--set logprob_recompute=true" in empty
    cache_two = tmp_path / "second"
    quick = model_module.first_step_note(make_config("h100", compile_cache=str(cache_two)))
    assert quick is not None and "about 2 minutes" in quick


def test_a_damaged_adapter_is_named_with_the_checkpoint_before_it(tmp_path):
    from safetensors.numpy import save_file

    from helpers.runs import COMPLETE_MARK

    for step in (2, 4):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "adapter_config.json").write_text('{"r": 4}')
        save_file(
            {"lora_A": np.zeros((4, 8), dtype=np.float32)}, str(checkpoint / "adapter_model.safetensors")
        )
        (checkpoint / COMPLETE_MARK).write_text("{}")
    latest = tmp_path / "checkpoint-4"
    model_module.check_adapter(latest)  # a sound adapter passes
    weights = latest / "adapter_model.safetensors"
    whole = weights.read_bytes()
    for damaged, problem in [
        (b"", "0 bytes long, too short for a header"),
        (whole[:-10], "is cut short"),
        (len(b"not json").to_bytes(8, "little") + b"not json", "header is not JSON"),
    ]:
        weights.write_bytes(damaged)
        with pytest.raises(model_module.ModelLoadError, match=problem) as raised:
            model_module.check_adapter(latest)
        assert f"the run's checkpoint before it is {tmp_path / 'checkpoint-2'}" in str(raised.value)
    weights.unlink()
    with pytest.raises(model_module.ModelLoadError, match="adapter_model.safetensors is missing"):
        model_module.check_adapter(latest)
