"""Keyword sensitivity as false alarms per hour, and enrollment advice (short or confusable keywords).

The registry calls this module; it holds no state but a cache. With the model's calibration bank
(:mod:`openkws.engine.calibration`), a keyword enrolled without a raw ``threshold`` gets the
threshold at which its proxy is expected to fire ``target_fa_per_hour`` times an hour on background
speech (default :data:`DEFAULT_TARGET_FA_PER_HOUR`), and every keyword reports the expected rate
of its current threshold. Without a bank (an older model directory) thresholds stay the model's
default and the expected rate is ``None``.

The prediction comes from TTS running speech, noise and music; on recorded human speech the measured
rate differs by the factor that ``openkws eval streams`` reports (docs/BENCHMARKS.md), so the
target is a relative sensitivity dial, not a guarantee.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openkws.engine.calibration import DEFAULT_TARGET_FA_PER_HOUR, CalibrationError, Calibrator
from openkws.engine.spotter import Spotter
from openkws.text.phonetics import phones

log = logging.getLogger("openkws")
MIN_PHONES = 6  # Picovoice advises 6+ phonemes; openWakeWord 3+ syllables
HIGH_FA_PER_HOUR = 2.0  # warn when a keyword's threshold is expected to fire more often than this
_CACHE = 4096

__all__ = ["DEFAULT_TARGET_FA_PER_HOUR", "CalibrationError", "NoCalibrationBank", "Sensitivity"]


class NoCalibrationBank(ValueError):
    """A false-alarm target was asked for, but the model ships no calibration bank."""

    def __init__(self) -> None:
        super().__init__(
            "this model has no calibration bank, so target_fa_per_hour cannot be met; set a raw "
            "threshold, or build the bank with `openkws eval bank --model <model dir>`"
        )


class Sensitivity:
    """Thresholds from FA/h targets and FA/h from thresholds, for one loaded model."""

    def __init__(
        self,
        calibrator: Calibrator | None,
        fallback_threshold: float,
        default_target: float = DEFAULT_TARGET_FA_PER_HOUR,
    ) -> None:
        if not default_target > 0:
            raise CalibrationError(f"default target must be > 0 false alarms per hour, got {default_target}")
        self.calibrator = calibrator
        self.fallback_threshold = fallback_threshold
        self.default_target = default_target
        self._cache: OrderedDict[tuple[bytes, float], float] = OrderedDict()

    @classmethod
    def load(
        cls, model_dir: Path, spotter: Spotter, default_target: float = DEFAULT_TARGET_FA_PER_HOUR
    ) -> Sensitivity:
        """The model directory's bank (a missing bank logs once and disables FA/h thresholds)."""
        cal = Calibrator.load(
            model_dir,
            spotter.spec.embedding_dim,
            spotter.params.refractory_frames,
            spotter.acoustic_fingerprint,
            cohort=spotter.cohort,  # cohort-normalised engines calibrate on the same scale
        )
        if cal is None:
            log.warning(
                "%s has no calibration bank: thresholds default to %.2f and expected false alarms per hour "
                "are not reported (build it with `openkws eval bank --model %s`)",
                model_dir,
                spotter.default_threshold,
                model_dir,
            )
        return cls(cal, spotter.default_threshold, default_target)

    @property
    def available(self) -> bool:
        return self.calibrator is not None

    def threshold(
        self, proxy: np.ndarray, target_fa_per_hour: float | None = None, phonemes: Sequence[str] = ()
    ) -> float:
        """Threshold meeting ``target_fa_per_hour`` (default: the service's) for this proxy
        (``phonemes``: the keyword's, which pick its cohort when scores are cohort-normalised)."""
        target = self.default_target if target_fa_per_hour is None else target_fa_per_hour
        if not target > 0:
            raise CalibrationError(f"target_fa_per_hour must be > 0, got {target}")
        if self.calibrator is None:
            return self.fallback_threshold
        n = len(phones(phonemes))
        return round(float(np.clip(self.calibrator.threshold_for(proxy, target, n), 0.0, 1.0)), 4)

    def expected_fa_per_hour(
        self, proxy: np.ndarray, threshold: float, phonemes: Sequence[str] = ()
    ) -> float | None:
        if self.calibrator is None:
            return None
        n = len(phones(phonemes))
        key = (np.asarray(proxy, np.float32).tobytes() + bytes([min(n, 255)]), round(float(threshold), 6))
        hit = self._cache.get(key)
        if hit is None:
            hit = round(self.calibrator.expected_fa_per_hour(proxy, threshold, n), 4)
            self._cache[key] = hit
            if len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return hit

    def warnings(
        self, phonemes: Sequence[str], expected: float | None, one_word_apart: Sequence[str] = ()
    ) -> list[str]:
        """Human-readable enrollment advice: too short, expected to fire often, one word from another."""
        out = []
        n = len(phones(phonemes))
        rate = (
            "" if expected is None else f"; expected {expected:.2g} false alarms per hour at this threshold"
        )
        if n < MIN_PHONES:
            out.append(
                f"short keyword: {n} phones (at least {MIN_PHONES} recommended, e.g. a two-word phrase) "
                f"is easily triggered by other speech or missed{rate}"
            )
        elif expected is not None and expected > HIGH_FA_PER_HOUR:
            out.append(
                f"expected {expected:.2g} false alarms per hour at this threshold; raise the threshold or "
                "lower target_fa_per_hour"
            )
        out += [
            f"differs from enrolled keyword {t!r} by one word: either may fire on the other"
            for t in one_word_apart
        ]
        return out
