"""What the red-team tests share: a fast sandbox and one way to hear what a strategy says."""

from __future__ import annotations

from helpers.config import SandboxConfig
from helpers.sandbox import play_batch

FAST = SandboxConfig(call_timeout=0.5, game_timeout=2.0)
"""Short limits: the strategies of these tests report at once (most raise what they found)."""


def said(source: str, seed: int = 1) -> str:
    """Play `source` once through the sandbox and return its error (where the strategies report)."""
    result = play_batch([source], seeds=[seed], sandbox_config=FAST)[0][0]
    return result.error or ""
