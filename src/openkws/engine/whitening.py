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
``openkws export whiten``) with the sha256 and fingerprint of the bank they came from. The file is
checked on its own (:func:`read_whitening`: readable, complete, finite, right dimension, a symmetric
positive definite inverse) and against its model (:func:`check_whitening`: the acoustic graphs' and
the bank's fingerprints). Whitened scores live on their own scale, so the bank is what gives them
thresholds: the model contract refuses a whitening without its bank
(:mod:`openkws.engine.model_spec`).

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
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WHITENING_FILE = "whitening.npz"
SHRINKAGE = 0.1  # weight of the isotropic target tr(C)/D * I in the shrunk covariance
NPZ_KEYS = ("mean", "inverse", "bank_sha256", "bank_fingerprint", "shrinkage", "modes")  # what save writes
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
                f"whitening modes {list(self.modes)}; accepted: a subset of {list(WHITENING_MODES)}"
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


def fit_whitening(
    embeddings: np.ndarray,
    shrinkage: float = SHRINKAGE,
    *,
    bank_sha256: str = "",
    bank_fingerprint: str = "",
    modes: tuple[str, ...] = WHITENING_MODES,
) -> Whitening:
    """Background embeddings [N, D] (N > 1) -> their mean and inverse shrunk covariance, tagged with
    the bank they came from and the proxy modes that use them (:class:`Whitening`)."""
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
    return Whitening(mean, np.linalg.inv(s), bank_sha256, bank_fingerprint, shrinkage, modes)


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


def _modes(stored: str) -> list[str]:
    """The ``modes`` entry: a JSON list of names (which ones, :class:`Whitening` checks)."""
    try:
        modes = json.loads(stored)
    except json.JSONDecodeError:
        modes = None
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise WhiteningError(
            f"modes {stored!r} is not a JSON list of names; accepted: a subset of {list(WHITENING_MODES)}"
        )
    return modes


def read_whitening(path: Path, dim: int) -> Whitening:
    """The whitening file alone: a readable ``.npz`` of plain arrays with every key, finite values,
    dimension ``dim`` and a symmetric positive definite inverse; raises :class:`WhiteningError`."""
    rebuild = "rebuild it with `openkws export whiten --model <dir>`"
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise WhiteningError(f"lacks {', '.join(missing)} (a whitening holds {', '.join(NPZ_KEYS)})")
            modes = _modes(str(z["modes"]))
            w = Whitening(
                z["mean"].astype(np.float64),
                z["inverse"].astype(np.float64),
                str(z["bank_sha256"]),
                str(z["bank_fingerprint"]),
                float(z["shrinkage"]),
                tuple(modes),
            )
    except WhiteningError as e:
        raise WhiteningError(f"{path}: {e}; {rebuild}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise WhiteningError(
            f"{path} is not a readable .npz of plain arrays ({', '.join(NPZ_KEYS)}): {e}; {rebuild}"
        ) from None
    if w.dim != dim:
        raise WhiteningError(f"{path} has dim {w.dim}; the model's embeddings have dim {dim}; {rebuild}")
    if not (np.all(np.isfinite(w.mean)) and np.all(np.isfinite(w.inverse))):
        raise WhiteningError(f"{path} contains NaN or inf; {rebuild}")
    # the inverse of a shrunk covariance: symmetric, eigenvalues > 0 (else directions flip or vanish)
    sym = np.allclose(w.inverse, w.inverse.T, rtol=1e-4, atol=1e-6 * float(np.abs(w.inverse).max()))
    if not sym or float(np.linalg.eigvalsh(w.inverse).min()) <= 0:
        raise WhiteningError(
            f"{path}: inverse is not symmetric positive definite, so not an inverse covariance; {rebuild}"
        )
    return w


def check_whitening(w: Whitening, path: Path, bank_path: Path, fingerprint: str | None = None) -> bool:
    """Raise :class:`WhiteningError` unless ``w`` was computed for the acoustic model ``fingerprint``
    (``None``: not checked) and, when ``bank_path`` exists, from that very bank. Returns whether the
    bank was there to check: the whitening itself needs only its own file."""
    recompute = "recompute it with `openkws export whiten --model <dir>`"
    if fingerprint is not None and w.bank_fingerprint != fingerprint:
        raise WhiteningError(
            f"{path} was computed for acoustic model {w.bank_fingerprint[:12]}, the graphs of this model "
            f"directory are {fingerprint[:12]}; {recompute}"
        )
    if not Path(bank_path).is_file():
        return False
    if sha256_bytes_of(bank_path) != w.bank_sha256:
        raise WhiteningError(
            f"{path} was computed from another calibration bank than {bank_path} (sha256 differs); {recompute}"
        )
    with np.load(bank_path, allow_pickle=False) as z:
        if str(z["fingerprint"]) != w.bank_fingerprint:
            raise WhiteningError(
                f"{path} was computed for bank fingerprint {w.bank_fingerprint[:12]}, {bank_path} has "
                f"{str(z['fingerprint'])[:12]}; {recompute}"
            )
    return True


def load_whitening(path: Path, bank_path: Path, dim: int, fingerprint: str | None = None) -> Whitening:
    """:func:`read_whitening` then :func:`check_whitening`; raises :class:`WhiteningError`."""
    w = read_whitening(path, dim)
    check_whitening(w, path, bank_path, fingerprint)
    return w
