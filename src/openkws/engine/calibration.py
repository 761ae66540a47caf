"""Sensitivity in false alarms per hour: keyword proxy + background bank -> threshold, and back.

The model directory may carry ``calibration_bank.npz`` (written at export by
``openkws.training.calibration_bank``): the engine's window embeddings of background audio (TTS
running speech, noise and music; never recorded human speech), every window length at every
``stride_frames``-th frame, int8 with one scale per vector. A keyword's false alarms on that audio
are its *events*: bank frames scoring above threshold (best window length), merged within the
detector's refractory time, as the decision code merges them. The expected rate is

* the empirical event count per hour where the bank has at least :data:`TAIL_K` events, and
* beyond that, an exponential tail fitted to the top :data:`TAIL_K` event peaks (the excess over
  the ``K``-th peak has mean ``beta``): ``rate(t) = K / hours * exp(-(t - u) / beta)``.

With cohort normalisation (:mod:`openkws.engine.cohort`) the bank is scored through the same
normalisation as live windows (``phones``: the keyword's phone count picks its cohort), so a target
means the same on either score scale.

Both are non-increasing in the threshold, so :meth:`Calibrator.threshold_for` is monotonic in
the target, and the two functions invert each other.

Example:
    >>> rng = np.random.default_rng(0)
    >>> emb = rng.standard_normal((400, 2, 8)).astype(np.float32)
    >>> emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    >>> cal = Calibrator(emb, segment=np.zeros(400, np.int32), frame=np.arange(400) * 3, hours=0.1,
    ...                  refractory_frames=6)
    >>> p = emb[0, 0]
    >>> t1, t2 = cal.threshold_for(p, 1.0), cal.threshold_for(p, 10.0)
    >>> t1 > t2, round(cal.expected_fa_per_hour(p, t2), 1)
    (True, 10.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openkws.engine.cohort import Cohort, squash

BANK_FILE = "calibration_bank.npz"
TAIL_K = 20
MIN_BETA = 0.005
DEFAULT_TARGET_FA_PER_HOUR = 0.5  # the documented default sensitivity
MAX_THRESHOLD = 0.99
# The accepted false-alarm targets (REST, CLI and keyword files): below 1e-6 FA/h (one per ~114 years)
# the tail fit says nothing, and the target must stay far from float underflow.
MIN_TARGET_FA_PER_HOUR = 1e-6
MAX_TARGET_FA_PER_HOUR = 3600.0


class CalibrationError(ValueError):
    """A bank file that does not fit the model, or a target outside (0, inf)."""


@dataclass(frozen=True)
class Peaks:
    """Event peak scores (descending) of one keyword on the bank, and the bank's hours."""

    scores: np.ndarray
    hours: float

    def rate(self, threshold: float) -> float:
        p, k = self.scores, min(TAIL_K, len(self.scores))
        if k == 0:
            return 0.0
        u = float(p[k - 1])
        if threshold <= u:
            return float(np.count_nonzero(p >= threshold)) / self.hours
        beta = max(MIN_BETA, float(np.mean(p[:k] - u)))
        return k / self.hours * float(np.exp(-(threshold - u) / beta))

    def threshold(self, target: float) -> float:
        if not (target > 0 and math.isfinite(target)):
            raise CalibrationError(f"target false alarms per hour must be > 0 and finite, got {target}")
        p, k = self.scores, min(TAIL_K, len(self.scores))
        if k == 0:
            return 0.0
        m = int(np.floor(target * self.hours + 1e-9))  # events allowed in the bank
        if m >= k:  # inside the measured range: just above the (m+1)-th peak
            return float(np.nextafter(p[m], np.inf)) if m < len(p) else float(p[-1]) - 1e-6
        u = float(p[k - 1])
        beta = max(MIN_BETA, float(np.mean(p[:k] - u)))
        # In logs: target * hours underflows to 0 for a subnormal target (5e-324 gave ZeroDivisionError).
        log_ratio = math.log(k) - math.log(target) - math.log(self.hours)
        return min(MAX_THRESHOLD, u + beta * log_ratio)


class Calibrator:
    """Background window embeddings ``[F, W, D]`` of a bank and the geometry to count events."""

    def __init__(
        self,
        embeddings: np.ndarray,
        segment: np.ndarray,
        frame: np.ndarray,
        hours: float,
        refractory_frames: int,
        cohort: Cohort | None = None,
    ) -> None:
        if embeddings.ndim != 3 or len(embeddings) != len(segment) or len(segment) != len(frame):
            raise CalibrationError("bank arrays disagree: embeddings [F, W, D], segment [F], frame [F]")
        if not hours > 0:
            raise CalibrationError("bank hours must be > 0")
        self.embeddings = np.asarray(embeddings, np.float32)
        self.segment = np.asarray(segment, np.int64)
        self.frame = np.asarray(frame, np.int64)
        self.hours = float(hours)
        self.refractory_frames = int(refractory_frames)
        self.cohort = cohort
        self._cohort_stats: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # phone count -> mean, std [F, W]

    @classmethod
    def load(
        cls,
        model_dir: Path,
        embedding_dim: int,
        refractory_frames: int,
        fingerprint: str | None = None,
        cohort: Cohort | None = None,
    ) -> Calibrator | None:
        """The model's bank, or None when it ships none; a bank of another model raises."""
        path = Path(model_dir) / BANK_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:  # a model file: never unpickle
            q, scale = z["embeddings"], z["scales"].astype(np.float32)
            emb = q.astype(np.float32) * scale[..., None]
            if emb.shape[-1] != embedding_dim:
                raise CalibrationError(
                    f"{path}: embeddings of dim {emb.shape[-1]}, the model has {embedding_dim}"
                )
            if fingerprint is not None and str(z["fingerprint"]) != fingerprint:
                raise CalibrationError(
                    f"{path} was built for another acoustic model; rebuild it with "
                    "`openkws eval bank --model <dir>`"
                )
            return cls(emb, z["segment"], z["frame"], float(z["hours"]), refractory_frames, cohort)

    def _scores(self, proxy: np.ndarray, phones: int | None) -> np.ndarray:
        """Bank scores [F, W] on the engine's scale (raw cosine, or cohort-normalised)."""
        s = self.embeddings @ np.asarray(proxy, np.float32)
        if self.cohort is None:
            return s
        if phones is None:
            raise CalibrationError("cohort-normalised calibration needs the keyword's phone count")
        b = self.cohort.bucket_of(phones)
        if b not in self._cohort_stats:  # the bank's cohort statistics, once per phone count
            f, w, d = self.embeddings.shape
            mean, std = self.cohort.stats(self.embeddings.reshape(-1, d), np.array([b]))
            self._cohort_stats[b] = (mean.reshape(f, w), std.reshape(f, w))
        mean, std = self._cohort_stats[b]
        return squash((s - mean) / std)

    def peaks(self, proxy: np.ndarray, phones: int | None = None) -> Peaks:
        """Greedy non-maximum suppression of the per-frame best score within the refractory time."""
        s = self._scores(proxy, phones).max(axis=1)
        order = np.argsort(-s, kind="stable")[: 50 * TAIL_K + int(self.hours * 200)]
        kept: list[float] = []
        taken: dict[int, list[int]] = {}
        for i in order:
            seg, fr = int(self.segment[i]), int(self.frame[i])
            near = taken.setdefault(seg, [])
            if any(abs(fr - f) < self.refractory_frames for f in near):
                continue
            near.append(fr)
            kept.append(float(s[i]))
        return Peaks(np.asarray(kept, np.float64), self.hours)

    def expected_fa_per_hour(self, proxy: np.ndarray, threshold: float, phones: int | None = None) -> float:
        return self.peaks(proxy, phones).rate(threshold)

    def threshold_for(self, proxy: np.ndarray, target_fa_per_hour: float, phones: int | None = None) -> float:
        return self.peaks(proxy, phones).threshold(target_fa_per_hour)
