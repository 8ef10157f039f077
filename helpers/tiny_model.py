"""A tiny random gpt-oss, built locally: the gpt-oss code paths on any CPU, with no download.

`make_tiny_model(path)` writes a random `GptOssForCausalLM` of the real architecture (2 layers, 4
experts, hidden size 64) and a byte-level BPE tokenizer trained here, on the task prompt and some
Python, with a harmony-style chat template (`<|start|>`, `<|channel|>`, `<|message|>`, `<|end|>`,
`<|return|>`) that takes `reasoning_effort`. Tests, the `cpu-tiny` profile and the GPU smoke run use
it, since the real weights cannot be downloaded on those machines. It learns nothing: it exercises
the code that only gpt-oss needs (LoRA on stacked experts, expert layouts, MXFP4 export).
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import prompts
from helpers.config import GameConfig

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
"""Environment that keeps Hugging Face libraries off the network (set while building the tiny model)."""

SPECIAL_TOKENS = (
    "<|startoftext|>",
    "<|endoftext|>",
    "<|return|>",
    "<|constrain|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|call|>",
)
"""The harmony format's special tokens, as in the gpt-oss tokenizer."""

CHAT_TEMPLATE = (
    "{%- if reasoning_effort is not defined %}{%- set reasoning_effort = 'medium' %}{%- endif -%}"
    "<|start|>system<|message|>You are a helpful assistant.\n"
    "Reasoning: {{ reasoning_effort }}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' or message['role'] == 'developer' %}"
    "<|start|>developer<|message|># Instructions\n\n{{ message['content'] }}<|end|>"
    "{%- elif message['role'] == 'user' %}"
    "<|start|>user<|message|>{{ message['content'] }}<|end|>"
    "{%- elif message['role'] == 'assistant' %}"
    "{%- if message.get('thinking') %}"
    "<|start|>assistant<|channel|>analysis<|message|>{{ message['thinking'] }}<|end|>"
    "{%- endif %}"
    "<|start|>assistant<|channel|>final<|message|>{{ message['content'] }}"
    "{%- if loop.last and not add_generation_prompt %}<|return|>{%- else %}<|end|>{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|start|>assistant{%- endif %}"
)
"""A harmony-style chat template: system message with `Reasoning: {reasoning_effort}`, then the turns."""


@dataclass(frozen=True)
class TinyModelShape:
    """Sizes of the tiny random gpt-oss (the real model: 24 layers, 32 experts, hidden 2880)."""

    num_hidden_layers: int = 2
    """Decoder layers (one sliding-window, one full attention)."""
    num_local_experts: int = 4
    """Experts per MoE layer."""
    num_experts_per_tok: int = 2
    """Experts each token is routed to."""
    hidden_size: int = 64
    """Model width (a multiple of 32, so that the experts can be packed in MXFP4 blocks)."""
    intermediate_size: int = 64
    """Expert width (a multiple of 32, same reason)."""
    num_attention_heads: int = 4
    """Query heads."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention, as in gpt-oss)."""
    head_dim: int = 16
    """Width of one attention head."""
    vocab_size: int = 2048
    """Tokenizer vocabulary, special tokens included."""
    max_position_embeddings: int = 4096
    """Longest sequence the rotary embedding is set up for."""


def _tokenizer_corpus() -> list[str]:
    """Local text the tiny tokenizer learns from: the task prompts, chat markup and some Python."""
    import bisect
    import heapq
    import random

    texts = []
    for keymap in ("bepo", "wasd"):
        for size in (4, 6):
            config = GameConfig(size=size, keymap=keymap)
            texts.append(prompts.build_prompt(config))
    texts.append(
        "def strategy(board):\n"
        "    import random\n"
        "    best, best_key = -1, 'a'\n"
        "    for key in ('a', 'i', 'u', 'é', 'w', 's', 'd'):\n"
        "        empty = sum(row.count(0) for row in board)\n"
        "        if empty > best:\n"
        "            best, best_key = empty, key\n"
        "    return best_key\n"
    )
    texts.append("Reasoning: low\nReasoning: medium\nReasoning: high\nanalysis commentary final\n")
    for module in (random, heapq, bisect):
        texts.append(inspect.getsource(module))
    return texts


def make_tiny_tokenizer(vocab_size: int = TinyModelShape.vocab_size) -> Any:
    """A byte-level BPE tokenizer trained here, with the harmony special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|startoftext|>",
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=TinyModelShape.max_position_embeddings,
    )


def make_tiny_model(path: str | os.PathLike, shape: TinyModelShape | None = None, seed: int = 0) -> Path:
    """Write a tiny random `GptOssForCausalLM` and its tokenizer to `path`; returns the path.

    The architecture class, the expert layout and the chat markup are gpt-oss's; only the sizes are
    small. Deterministic for a given seed; never touches the network.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    import torch
    from transformers import GenerationConfig, GptOssConfig, GptOssForCausalLM

    shape = shape or TinyModelShape()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer(shape.vocab_size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = GptOssConfig(
        num_hidden_layers=shape.num_hidden_layers,
        num_local_experts=shape.num_local_experts,
        num_experts_per_tok=shape.num_experts_per_tok,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        vocab_size=len(tokenizer),
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=ids["<|startoftext|>"],
        eos_token_id=ids["<|return|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = GptOssForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|startoftext|>"],
        eos_token_id=[ids["<|return|>"], ids["<|endoftext|>"], ids["<|call|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=True,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "tiny_model.json").write_text(
        json.dumps({"shape": shape.__dict__, "seed": seed}, indent=2) + "\n"
    )
    return path
