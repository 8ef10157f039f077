"""MXFP4, the 4-bit format gpt-oss ships its expert weights in: packing and unpacking, nothing else.

Blocks of 32 FP4 (E2M1) values share one power-of-two scale (the OCP microscaling format). The export
packs merged expert weights with `quantize_mxfp4`; the layout converter and the export's check unpack
them with `dequantize_mxfp4`. A leaf module: it imports nothing of the project, and torch only inside.
"""

from __future__ import annotations

from typing import Any

MXFP4_BLOCK = 32
"""Values sharing one scale in an MXFP4 block (the OCP microscaling format)."""

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""The magnitudes an FP4 E2M1 number can take; the fourth bit is the sign."""


class MXFP4Error(ValueError):
    """Weights that cannot be packed as MXFP4 (a dimension that is not a multiple of the block)."""


def quantize_mxfp4(weight: Any) -> tuple[Any, Any]:
    """Pack expert weights `[experts, in, out]` as gpt-oss MXFP4: (blocks, scales), both uint8.

    Blocks are `[experts, out, in / 32, 16]` (two FP4 codes per byte, the even element in the low
    nibble), scales `[experts, out, in / 32]` (a power-of-two exponent biased by 127): the layout of
    openai/gpt-oss-20b, which `transformers.integrations.mxfp4` unpacks. Each block's scale is the
    smallest power of two that keeps its largest value within FP4's range (6), and every value is
    rounded to the nearest FP4 magnitude.
    """
    import torch

    experts, inputs, outputs = weight.shape
    if inputs % MXFP4_BLOCK:
        raise MXFP4Error(
            f"MXFP4 packs blocks of {MXFP4_BLOCK} values; an input size of {inputs} does not divide"
        )
    thresholds = torch.tensor([(a + b) / 2 for a, b in zip(FP4_VALUES, FP4_VALUES[1:], strict=False)])
    blocks = torch.empty(experts, outputs, inputs // MXFP4_BLOCK, MXFP4_BLOCK // 2, dtype=torch.uint8)
    scales = torch.empty(experts, outputs, inputs // MXFP4_BLOCK, dtype=torch.uint8)
    for expert in range(experts):  # one expert at a time bounds the temporary memory
        rows = weight[expert].t().float().cpu().reshape(outputs, inputs // MXFP4_BLOCK, MXFP4_BLOCK)
        largest = rows.abs().amax(-1)
        exponent = torch.ceil(torch.log2(largest / FP4_VALUES[-1]))
        exponent = torch.where(largest > 0, exponent, torch.full_like(exponent, -127.0)).clamp(-127, 127)
        scaled = rows / torch.exp2(exponent).unsqueeze(-1)
        codes = torch.bucketize(scaled.abs().contiguous(), thresholds).to(torch.uint8) | (
            (scaled < 0).to(torch.uint8) << 3
        )
        blocks[expert] = codes[..., 0::2] | (codes[..., 1::2] << 4)
        scales[expert] = (exponent + 127).to(torch.uint8)
    return blocks, scales


def dequantize_mxfp4(blocks: Any, scales: Any) -> Any:
    """Unpack `quantize_mxfp4`'s output back to float32 `[experts, in, out]`."""
    import torch

    values = torch.tensor(FP4_VALUES + tuple(-v for v in FP4_VALUES))
    codes = torch.stack((blocks & 0x0F, blocks >> 4), dim=-1).reshape(*blocks.shape[:-1], MXFP4_BLOCK).long()
    rows = values[codes] * torch.exp2(scales.float() - 127).unsqueeze(-1)
    return rows.reshape(*rows.shape[:-2], -1).transpose(1, 2).contiguous()
