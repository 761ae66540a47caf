"""What an enrollment asks and answers, and how it can fail: the request and result types of
:class:`openkws.keywords.registry.KeywordRegistry`, with its errors and the index/store difference
its start-up check reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.keywords.confusables import Confusable
from openkws.keywords.store import KeywordRecord
from openkws.text import G2PError


@dataclass(frozen=True)
class EnrollItem:
    text: str
    threshold: float | None = None
    metadata: dict[str, Any] | None = None
    proxy: ProxyMode = "text"
    phonemes: tuple[str, ...] | None = None  # override of the G2P (validated against the inventory)
    target_fa_per_hour: float | None = None  # used when threshold is None


@dataclass(frozen=True)
class Enrolled:
    record: KeywordRecord
    created: bool
    confusable_with: tuple[Confusable, ...]
    rewrites: tuple[str, ...] = ()  # what normalisation changed in the submitted text
    expected_fa_per_hour: float | None = None
    warnings: tuple[str, ...] = ()
    expected_hit_rate: float | None = None  # TTS estimate; None when not estimated (see enroll)


@dataclass(frozen=True)
class IndexDiff:
    """How the in-memory index differs from the store (all empty: in step)."""

    missing: tuple[int, ...] = ()  # in the store, not in the index
    extra: tuple[int, ...] = ()  # in the index, not in the store
    thresholds: tuple[int, ...] = ()  # in both, with different thresholds

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.thresholds)

    def __str__(self) -> str:
        return (
            f"{len(self.missing)} missing, {len(self.extra)} extra, {len(self.thresholds)} with another threshold"
            f" (first ids: {list(self.missing[:5])}, {list(self.extra[:5])}, {list(self.thresholds[:5])})"
        )


class TooManyKeywords(Exception):
    def __init__(self, tenant_count: int, new: int, limit: int) -> None:
        super().__init__(
            f"the tenant has {tenant_count} keywords and this request adds {new}; at most {limit} are "
            "accepted per tenant; delete keywords first"
        )
        self.message = str(self)


class InvalidKeywordText(ValueError):
    """Keyword text rejected by the G2P rules; ``position`` is its index in a batch."""

    def __init__(self, position: int, error: G2PError) -> None:
        super().__init__(error.message)
        self.position = position
        self.error = error
