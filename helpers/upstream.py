"""Workarounds for the libraries' current versions, in one place: a version bump has one file to read.

- TRL 1.15 computes the completions' log-probabilities with a Triton kernel only; on a CPU-only torch
  `install_logprob_fallback` gives it a plain-torch head (`TorchLogProbHead`).
- Unsloth patches transformers and TRL when imported, so it must be imported first:
  `helpers.model.import_unsloth_if_used`, called before anything else loads them.
- Unsloth's forward returns no logits unless `UNSLOTH_RETURN_LOGITS=1`, and its patches broke plain
  transformers loads beside its 4-bit model: the export check sets it for its block
  (`unsloth_returns_logits`) and reloads merged exports in a fresh process (`helpers.export`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class TorchLogProbHead:
    """TRL's fused LM head (`_ChunkedLogProbFunction`) in plain torch, for machines without Triton.

    TRL 1.15's GRPO computes the completions' log-probabilities with a Triton kernel only
    (`trl/kernels/chunked_logprob.py` imports triton, and `trl.trainer.utils` sets the function to
    None when that fails), so on a CPU-only torch every step fails with
    "'NoneType' object has no attribute 'apply'". This computes the same five per-token outputs with
    the full logits, which a CPU run of the tiny model can afford; autograd gives the backward.
    """

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
        """(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1), each None unless requested."""
        import torch

        logits = hidden.float() @ weight.float().t()
        if bias is not None:
            logits = logits + bias.float()
        logits = logits * logit_scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logits = logits / temperature
        log_z = torch.logsumexp(logits, dim=-1)
        log_probs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        entropy = log_sum_sq = mean_logits = is_top1 = None
        if "entropy" in outputs:
            entropy = log_z - (torch.softmax(logits, dim=-1) * logits).sum(-1)
        if "log_sum_sq_probs" in outputs:
            log_sum_sq = torch.logsumexp(2 * (logits - log_z.unsqueeze(-1)), dim=-1).detach()
        if "mean_logits" in outputs:
            mean_logits = logits.mean(-1).detach()
        if "is_top1" in outputs:
            is_top1 = logits.argmax(-1) == targets
        return log_probs, entropy, log_sum_sq, mean_logits, is_top1


def install_logprob_fallback() -> bool:
    """Give TRL the plain-torch log-probability head when its Triton kernel is unavailable; True if done."""
    from trl.trainer import utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", True) is not None:
        return False
    trl_utils._ChunkedLogProbFunction = TorchLogProbHead
    return True


@contextlib.contextmanager
def unsloth_returns_logits() -> Iterator[None]:
    """Unsloth's forward returns no logits unless UNSLOTH_RETURN_LOGITS=1: set it for a block, then restore it."""
    saved = os.environ.get("UNSLOTH_RETURN_LOGITS")
    os.environ["UNSLOTH_RETURN_LOGITS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("UNSLOTH_RETURN_LOGITS", None)
        else:
            os.environ["UNSLOTH_RETURN_LOGITS"] = saved
