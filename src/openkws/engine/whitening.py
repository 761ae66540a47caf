"""Whitened acoustic proxies: a keyword's TTS direction measured against the model's own background.

A plain TTS proxy is the normalised mean of its renditions' embeddings, ``normalize(mu_tts)``. Much
of that direction is shared by all speech the model embeds, so it also points at background audio.
The whitened proxy removes the background mean and divides by the background covariance (the
Fisher / LDA direction of "this keyword" against "the background"):

    ``proxy = normalize(S^-1 (mu_tts - mu_bg))``,  ``S = (1 - a) C + a * tr(C) / D * I``

where ``mu_bg`` and ``C`` are the mean and covariance of the window embeddings of the model's
calibration bank (:data:`openkws.engine.calibration.BANK_FILE`: TTS running speech, noise and music,
never recorded speech) and ``a`` = :data:`SHRINKAGE` keeps ``S`` well conditioned. The proxy is
still a unit vector scored by cosine: the index, the per-frame cost and the decision layer do not
change, only what is enrolled. Measured in docs/RESULTS.md ("Whitened TTS proxies").

The model directory stores ``mu_bg`` and ``S^-1`` in :data:`WHITENING_FILE` (written at export or by
``openkws export whiten``) with the sha256 and fingerprint of the bank they came from; a directory
whose whitening does not match its bank is refused (:func:`load_whitening`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> bank = rng.standard_normal((5000, 4)) * 2.0 + np.array([1.0, 0, 0, 0])  # white, mean e0
    >>> w = fit_whitening(bank)
    >>> p = w.proxy(np.array([1.0, 3.0, 0.0, 0.0]))  # the background mean is taken out
    >>> (np.round(p, 1) + 0.0).tolist(), round(float(np.linalg.norm(p)), 6)
    ([0.0, 1.0, 0.0, 0.0], 1.0)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WHITENING_FILE = "whitening.npz"
SHRINKAGE = 0.1  # weight of the isotropic target tr(C)/D * I in the shrunk covariance
WHITENING_MODES = ("tts", "both")  # proxy modes that may use the whitened acoustic proxy
# Modes `openkws export` whitens by default: the shipping rule of docs/RESULTS.md ("Whitened TTS proxies").
SHIPPED_MODES: tuple[str, ...] = ("tts", "both")


class WhiteningError(ValueError):
    """A whitening that cannot be computed, or one that does not fit its model directory."""


@dataclass(frozen=True)
class Whitening:
    """Background mean ``mean`` [D] and inverse shrunk covariance ``inverse`` [D, D] of one bank.

    ``modes``: the proxy modes that enroll the whitened proxy in this model directory (``both`` is then
    normalize(text + whitened TTS), :func:`openkws.engine.acoustic_proxy.combine_proxies`).
    """

    mean: np.ndarray
    inverse: np.ndarray
    bank_sha256: str = ""
    bank_fingerprint: str = ""
    shrinkage: float = SHRINKAGE
    modes: tuple[str, ...] = WHITENING_MODES

    def __post_init__(self) -> None:
        d = self.mean.shape
        if len(d) != 1 or self.inverse.shape != (d[0], d[0]):
            raise WhiteningError(
                f"whitening shapes disagree: mean {self.mean.shape}, inverse {self.inverse.shape}"
            )
        bad = [m for m in self.modes if m not in WHITENING_MODES]
        if bad:
            raise WhiteningError(
                f"whitening modes {list(self.modes)}; accepted: a subset of {WHITENING_MODES}"
            )

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def direction(self, mean_embedding: np.ndarray) -> np.ndarray:
        """Mean rendition embedding(s) [..., D] (not normalised) -> whitened unit direction(s) [..., D]."""
        m = np.asarray(mean_embedding, np.float64)
        if m.shape[-1] != self.dim:
            raise WhiteningError(f"embedding of dim {m.shape[-1]}; this whitening has dim {self.dim}")
        v = (m - self.mean) @ self.inverse.T
        n = np.linalg.norm(v, axis=-1, keepdims=True)
        if np.any(n < 1e-12):
            raise WhiteningError("the keyword's mean embedding equals the background mean: no direction")
        return np.asarray(v / n, np.float32)

    def proxy(self, mean_embedding: np.ndarray) -> np.ndarray:
        """The whitened TTS proxy [D] (unit vector) of one keyword's mean rendition embedding [D]."""
        return self.direction(mean_embedding)

    def save(self, path: Path) -> Path:
        """Write the ``.npz`` (plain arrays only: the loader never unpickles)."""
        np.savez(
            path,
            mean=self.mean.astype(np.float32),
            inverse=self.inverse.astype(np.float32),
            bank_sha256=np.array(self.bank_sha256),
            bank_fingerprint=np.array(self.bank_fingerprint),
            shrinkage=np.array(self.shrinkage),
            modes=np.array(json.dumps(list(self.modes))),
        )
        return Path(path)


def fit_whitening(embeddings: np.ndarray, shrinkage: float = SHRINKAGE, **meta: object) -> Whitening:
    """Background embeddings [N, D] (N > 1) -> their mean and inverse shrunk covariance.

    ``meta`` is passed to :class:`Whitening` (bank hash, fingerprint, modes)."""
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2 or len(x) < 2 or x.shape[1] < 1:
        raise WhiteningError(f"background embeddings must be [N > 1, D], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise WhiteningError("background embeddings contain NaN or inf")
    if not 0.0 < shrinkage <= 1.0:
        raise WhiteningError(f"shrinkage must be in (0, 1], got {shrinkage}")
    mean = x.mean(axis=0)
    c = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    scale = float(np.trace(c)) / x.shape[1]
    if scale <= 0:
        raise WhiteningError("background embeddings do not vary: no covariance to whiten with")
    s = (1.0 - shrinkage) * c + shrinkage * scale * np.eye(x.shape[1])
    return Whitening(mean, np.linalg.inv(s), shrinkage=shrinkage, **meta)  # type: ignore[arg-type]


def sha256_bytes_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bank_embeddings(bank_path: Path) -> tuple[np.ndarray, str]:
    """Every window embedding of a calibration bank [F * W, D] (dequantised) and its fingerprint."""
    with np.load(bank_path, allow_pickle=False) as z:
        emb = z["embeddings"].astype(np.float32) * z["scales"].astype(np.float32)[..., None]
        return emb.reshape(-1, emb.shape[-1]), str(z["fingerprint"])


def whitening_from_bank(bank_path: Path, modes: Sequence[str] = WHITENING_MODES) -> Whitening:
    """The whitening of one calibration bank file, tagged with the bank's sha256 and fingerprint."""
    emb, fingerprint = bank_embeddings(bank_path)
    return fit_whitening(
        emb,
        bank_sha256=sha256_bytes_of(bank_path),
        bank_fingerprint=fingerprint,
        modes=tuple(modes),
    )


def load_whitening_modes(path: Path) -> tuple[str, ...]:
    """The modes a whitening file covers (without checking it against a bank)."""
    with np.load(path, allow_pickle=False) as z:
        return tuple(json.loads(str(z["modes"])))


def load_whitening(path: Path, bank_path: Path, dim: int) -> Whitening:
    """Read a whitening file and check it against the bank beside it; raises :class:`WhiteningError`."""
    with np.load(path, allow_pickle=False) as z:
        try:
            w = Whitening(
                z["mean"].astype(np.float64),
                z["inverse"].astype(np.float64),
                str(z["bank_sha256"]),
                str(z["bank_fingerprint"]),
                float(z["shrinkage"]),
                tuple(json.loads(str(z["modes"]))),
            )
        except KeyError as e:
            raise WhiteningError(f"{path} lacks {e}; rebuild it with `openkws export whiten`") from None
    if w.dim != dim:
        raise WhiteningError(f"{path} has dim {w.dim}; the model's embeddings have dim {dim}")
    if not Path(bank_path).is_file():
        raise WhiteningError(
            f"{path} needs the calibration bank it was computed from ({bank_path}), which is missing"
        )
    if sha256_bytes_of(bank_path) != w.bank_sha256:
        raise WhiteningError(
            f"{path} was computed from another calibration bank than {bank_path} (sha256 differs); "
            "recompute it with `openkws export whiten --model <dir>`"
        )
    with np.load(bank_path, allow_pickle=False) as z:
        if str(z["fingerprint"]) != w.bank_fingerprint:
            raise WhiteningError(
                f"{path} was computed for bank fingerprint {w.bank_fingerprint[:12]}, {bank_path} has "
                f"{str(z['fingerprint'])[:12]}; recompute it with `openkws export whiten --model <dir>`"
            )
    return w
