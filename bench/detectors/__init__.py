"""Benchmark adapters, one module per system, behind :class:`bench.detectors.base.Detector`.

Adapters import their system lazily, so listing them costs nothing and a missing optional package
only matters when that system is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.detectors.base import Detector, DetectorOutput, ScoreTrace, SweepEvents, events_at, trace_events


def _openkws(**kw: Any) -> Detector:
    from bench.detectors.openkws import OpenKWSDetector

    return OpenKWSDetector(**kw)


def _openkws_tts(**kw: Any) -> Detector:
    from bench.detectors.openkws import OpenKWSTTSDetector

    return OpenKWSTTSDetector(**kw)


def _pocketsphinx(**kw: Any) -> Detector:
    from bench.detectors.pocketsphinx_kws import PocketsphinxDetector

    return PocketsphinxDetector(**kw)


def _openwakeword(**kw: Any) -> Detector:
    from bench.detectors.openwakeword import OpenWakeWordDetector

    return OpenWakeWordDetector(**kw)


def _efficientword(**kw: Any) -> Detector:
    from bench.detectors.efficientword import EfficientWordDetector

    return EfficientWordDetector(**kw)


DETECTORS: dict[str, Callable[..., Detector]] = {
    "openkws": _openkws,
    "openkws-tts": _openkws_tts,
    "pocketsphinx": _pocketsphinx,
    "openwakeword": _openwakeword,
    "efficientword": _efficientword,
}


def make_detector(name: str, **kwargs: Any) -> Detector:
    """Build a detector by name; an unknown name lists the valid ones."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown system {name!r}; choose from {sorted(DETECTORS)}") from None
    return factory(**kwargs)


__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorOutput",
    "ScoreTrace",
    "SweepEvents",
    "events_at",
    "make_detector",
    "trace_events",
]
