"""A message cut into pieces where a test (or hypothesis) says: for content sent as it comes."""

from __future__ import annotations

__all__ = ["pieces"]


def pieces(data: bytes, at: list[int]) -> list[bytes]:
    """``data`` cut at the offsets in ``at`` (those inside it, each once, in order)."""
    points = sorted({c for c in at if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
