"""Build a random-weight gpt-oss checkpoint of the exact gpt-oss-20b shape, with a local tokenizer.

No weights can be downloaded on the GPU host, yet the throughput of a GRPO step depends only on the
model's shape (24 layers, 32 experts of which 4 are routed per token, hidden size 2880, a 201088-token
vocabulary), not on what the weights have learnt. So `benchmarks/gpu_step.py` times steps on a model
built here: initialised on the GPU directly in bfloat16 (about 21 billion parameters, 39 GiB; building
in float32 first would not fit in 80 GB) and saved as safetensors, because Unsloth's loader takes a
folder. The tokenizer is word-level, built from the task prompt's words, padded to the model's
vocabulary with filler words so that every sampled id decodes, with the gpt-oss special tokens at
their real ids and a harmony-like chat template that accepts `reasoning_effort`.

    python benchmarks/make_full_shape.py /tmp/gpt-oss-20b-random            # on the GPU host
    python benchmarks/make_full_shape.py /tmp/tiny-gpt-oss --tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import GptOssConfig, GptOssForCausalLM, PreTrainedTokenizerFast

SPECIAL_OFFSETS = {
    "<|endoftext|>": 0,
    "<|return|>": 3,
    "<|constrain|>": 4,
    "<|channel|>": 6,
    "<|start|>": 7,
    "<|end|>": 8,
    "<|message|>": 9,
    "<|call|>": 13,
}
"""gpt-oss special tokens, as offsets from `<|endoftext|>` (id 199999 in the real vocabulary)."""

REAL_ENDOFTEXT_ID = 199999
"""`<|endoftext|>`'s id in gpt-oss's o200k_harmony vocabulary."""

CHAT_TEMPLATE = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n\n"
    "Reasoning: {{ reasoning_effort | default('medium') }}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|start|>assistant<|channel|>final<|message|>{{ message['content'] }}<|return|>"
    "{% else %}"
    "<|start|>{{ message['role'] }}<|message|>{{ message['content'] }}<|end|>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)
"""A harmony-like template: the system header with the reasoning effort, then one block per message."""

SEED_TEXT = """You are ChatGPT a large language model trained by OpenAI Knowledge cutoff Current date
Reasoning low medium high Valid channels analysis commentary final Channel must be included for every
message system user assistant developer def strategy board return import from for in if elif else
while and or not True False None len range max min sum abs list dict tuple set sorted enumerate zip
row col move moves score best empty tiles tile up down left right math random itertools functools
collections heapq copy typing operator statistics bisect python"""
"""Words the tokenizer knows besides the prompt's own (the prompt module adds its words at run time)."""


@dataclass(frozen=True)
class BuildReport:
    """What building the checkpoint cost."""

    path: str
    """Folder holding config.json, the safetensors shards and the tokenizer."""
    parameters: int
    """Parameter count of the model."""
    gigabytes: float
    """Size of the saved shards, in GB (10^9 bytes)."""
    init_seconds: float
    """Seconds to allocate and randomly initialise the model."""
    save_seconds: float
    """Seconds to write the shards and the tokenizer."""
    device: str
    """Where the model was initialised."""


def model_config(tiny: bool = False) -> GptOssConfig:
    """gpt-oss-20b's shape (transformers' defaults are the 120b's), or a tiny one of the same class."""
    if tiny:
        return GptOssConfig(
            num_hidden_layers=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            hidden_size=64,
            intermediate_size=64,
            head_dim=16,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=1024,
            pad_token_id=1024 - 16,
            eos_token_id=1024 - 16 + SPECIAL_OFFSETS["<|return|>"],
        )
    return GptOssConfig(
        num_hidden_layers=24,
        num_local_experts=32,
        num_experts_per_tok=4,
        hidden_size=2880,
        intermediate_size=2880,
        head_dim=64,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=201088,
        router_aux_loss_coef=0.9,
        pad_token_id=REAL_ENDOFTEXT_ID,
        eos_token_id=REAL_ENDOFTEXT_ID + SPECIAL_OFFSETS["<|return|>"],
    )


def build_tokenizer(vocab_size: int, extra_text: str = "") -> PreTrainedTokenizerFast:
    """A word-level tokenizer of exactly `vocab_size` ids with gpt-oss's special tokens and chat template."""
    base = REAL_ENDOFTEXT_ID if vocab_size > REAL_ENDOFTEXT_ID + 16 else vocab_size - 16
    specials = {token: base + offset for token, offset in SPECIAL_OFFSETS.items()}
    words = ["<|unk|>"]
    for word in re.findall(r"\w+|[^\w\s]", SEED_TEXT + " " + extra_text + " " + CHAT_TEMPLATE):
        if word not in words:
            words.append(word)
    vocab: dict[str, int] = {}
    next_id, filler = 0, 0
    for token_id in range(vocab_size):
        reserved = [t for t, i in specials.items() if i == token_id]
        if reserved:
            vocab[reserved[0]] = token_id
        elif base <= token_id < base + 16:
            vocab[f"<|reserved_{token_id}|>"] = token_id
        elif next_id < len(words):
            vocab[words[next_id]] = token_id
            next_id += 1
        else:
            vocab[f"w{filler}"] = token_id
            filler += 1
    if next_id < len(words):
        raise ValueError(f"a vocabulary of {vocab_size} cannot hold the {len(words)} words of the prompt")
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
        unk_token="<|unk|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=131072,
    )


def build_checkpoint(
    path: str | Path, tiny: bool = False, device: str = "cuda", layout: str = "stacked"
) -> BuildReport:
    """Initialise the random model on `device` in bfloat16 and save it with its tokenizer to `path`.

    `layout="per-expert"` writes the experts one `nn.Linear` per expert, as Unsloth's pre-quantized
    4-bit gpt-oss checkpoints are laid out (`helpers.layout`), so a 4-bit load reads them directly.
    """
    from helpers.prompts import build_prompt

    path = Path(path)
    config = model_config(tiny)
    torch.manual_seed(3407)
    start = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = GptOssForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.config.dtype = torch.bfloat16
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    init_seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.parameters())

    start = time.perf_counter()
    if layout == "per-expert":
        from helpers.layout import SHARD_BYTES, TensorSource, to_per_expert, write_shards

        path.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(path)
        tensors = to_per_expert(TensorSource.of(model.state_dict()))
        write_shards(((name, tensor.cpu()) for name, tensor in tensors), path, SHARD_BYTES)
    else:
        model.save_pretrained(path, max_shard_size="5GB")
    build_tokenizer(config.vocab_size, extra_text=build_prompt()).save_pretrained(path)
    save_seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    report = BuildReport(
        path=str(path),
        parameters=parameters,
        gigabytes=round(size / 1e9, 2),
        init_seconds=round(init_seconds, 1),
        save_seconds=round(save_seconds, 1),
        device=device,
    )
    (path / "build_report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="folder to write the checkpoint into")
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same class (CPU tests)")
    parser.add_argument("--device", default="cuda", help="where to initialise the weights (cuda or cpu)")
    parser.add_argument(
        "--layout", choices=("stacked", "per-expert"), default="stacked", help="how the experts are stored"
    )
    args = parser.parse_args()
    report = build_checkpoint(args.path, tiny=args.tiny, device=args.device, layout=args.layout)
    print(json.dumps(asdict(report)), flush=True)


if __name__ == "__main__":
    main()
