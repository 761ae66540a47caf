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

from openkws.engine.calibration import (
    DEFAULT_TARGET_FA_PER_HOUR,
    MAX_TARGET_FA_PER_HOUR,
    MIN_TARGET_FA_PER_HOUR,
    CalibrationError,
    Calibrator,
)
from openkws.engine.hit_rate import LOW_HIT_RATE, expected_hit_rates
from openkws.engine.spotter import Spotter
from openkws.text.phonetics import phones
from openkws.text.tts import ProxyTTS, TTSError

log = logging.getLogger("openkws")
MIN_PHONES = 6  # Picovoice advises 6+ phonemes; openWakeWord 3+ syllables
MAX_FA_PER_HOUR = 3600.0  # the largest target accepted (one false alarm a second)
HIGH_FA_PER_HOUR = 2.0  # warn when a keyword's threshold is expected to fire more often than this
_CACHE = 4096

__all__ = [
    "NoCalibrationBank",
    "Sensitivity",
    "estimate_hit_rates",
    "hit_rate_warning",
]


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

    def choose(
        self,
        proxy: np.ndarray,
        threshold: float | None = None,
        target_fa_per_hour: float | None = None,
        default_threshold: float | None = None,
        phonemes: Sequence[str] = (),
    ) -> float:
        """A new keyword's threshold, in the one order the service and the library share: a raw
        ``threshold`` > ``target_fa_per_hour`` > an operator's ``default_threshold`` > the default
        FA/h target (the model's default threshold without a bank). Raises :class:`NoCalibrationBank`
        for a target without a bank."""
        if threshold is not None:
            return float(threshold)
        if target_fa_per_hour is not None and not self.available:
            raise NoCalibrationBank()
        if target_fa_per_hour is None and default_threshold is not None:
            return float(default_threshold)
        if not self.available:
            return self.fallback_threshold
        return self.threshold(proxy, target_fa_per_hour, phonemes)

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

    def carried(
        self, old_proxy: np.ndarray, threshold: float, new_proxy: np.ndarray, phonemes: Sequence[str] = ()
    ) -> float | None:
        """The threshold at which ``new_proxy`` has the bank-expected false-alarm rate that ``old_proxy``
        (of the same acoustic graphs) had at ``threshold``: a stored keyword whose proxy the model now
        makes differently (whitening added, removed or swapped) keeps its sensitivity, not its raw
        cosine (:mod:`openkws.keywords.stored_proxies`). None without a bank."""
        if self.calibrator is None:
            return None
        n = len(phones(phonemes))
        rate = self.calibrator.expected_fa_per_hour(old_proxy, threshold, n)
        rate = min(max(rate, MIN_TARGET_FA_PER_HOUR), MAX_TARGET_FA_PER_HOUR)
        return round(float(np.clip(self.calibrator.threshold_for(new_proxy, rate, n), 0.0, 1.0)), 4)

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


def hit_rate_warning(rate: float | None, threshold: float, proxy: str) -> str | None:
    """Advice when few TTS renditions of a keyword would fire at its threshold (None: nothing to say)."""
    if rate is None or rate >= LOW_HIT_RATE:
        return None
    todo = "lower the sensitivity (a higher target_fa_per_hour, e.g. 2), use a longer phrase"
    todo += ", or enroll with proxy 'tts'" if proxy == "text" else ""
    return (
        f"expected hit rate {rate:.0%} at threshold {threshold:g}: a TTS estimate (the keyword spoken by "
        f"synthetic voices, with speed and noise variants), not a measurement on real voices; to detect it "
        f"more often, {todo}"
    )


def estimate_hit_rates(
    spotter: Spotter,
    tts: ProxyTTS,
    texts: Sequence[str],
    proxies: Sequence[np.ndarray | None],
    thresholds: Sequence[float],
    modes: Sequence[str],
    waves: dict[str, list[np.ndarray]],
) -> list[tuple[float | None, list[str]]]:
    """(expected hit rate, warnings) per keyword (:mod:`openkws.engine.hit_rate`), from the renditions
    in ``waves`` (those an acoustic proxy used) or synthesized here (and added to ``waves``). None for
    a keyword without a proxy (a text already enrolled) or when TTS fails, with a warning saying so."""
    out: list[tuple[float | None, list[str]]] = [(None, []) for _ in texts]
    jobs: list[tuple[np.ndarray, float, Sequence[np.ndarray]]] = []
    where: list[int] = []
    for i, (text, proxy, thr) in enumerate(zip(texts, proxies, thresholds, strict=True)):
        if proxy is None:
            continue
        try:
            if text not in waves:
                waves[text] = tts.renditions(text)
        except TTSError as e:
            out[i] = (None, [f"expected hit rate not estimated: TTS failed ({e})"])
            continue
        jobs.append((proxy, thr, waves[text]))
        where.append(i)
    for i, rate in zip(where, expected_hit_rates(spotter, jobs) if jobs else [], strict=True):
        note = hit_rate_warning(rate, thresholds[i], modes[i])
        out[i] = (rate, [] if note is None else [note])
    return out
