"""Stored ``tts``/``both`` keywords at start-up: which proxy the index gets, and what their thresholds become.

An acoustic proxy costs a TTS synthesis, so it is stored with the fingerprint of what made it
(:func:`openkws.engine.model_spec.proxy_fingerprint`: the acoustic graphs, plus the whitening when
the model whitens the keyword's mode). Opened with a model directory, a stored keyword is

* **kept** when this model makes its proxy the same way (a fingerprint written before the graphs'
  part was readable is recognised for the current whitening, and relabelled);
* **re-made** by TTS otherwise, and its threshold is
  - **carried** when the old proxy is of these same acoustic graphs (a whitening added, removed,
    swapped for one from another bank or shrinkage, or its modes changed) and the model has a
    calibration bank: the new threshold gives the new proxy the false-alarm rate the bank expects of
    the old proxy at the old threshold (:meth:`Sensitivity.carried`). Plain and whitened cosines live
    on different scales (thresholds near 0.66 and 0.17 on the packaged model), so the raw threshold
    would fire on most speech or never; the keyword keeps its sensitivity instead;
  - **reset** otherwise (other graphs, or no bank to score the old proxy on) to the threshold a new
    enrollment of the keyword gets: the default sensitivity from the bank, else the model's default
    threshold. The store keeps no per-keyword false-alarm target, so nothing else is known of the
    keyword's sensitivity; a warning names the keywords.
* When TTS fails, an old proxy of these graphs stays in use with its own threshold (still a unit
  vector in these graphs' space); any other falls back to the text proxy with a reset threshold. The
  stored proxy is left alone either way, so the next start tries TTS again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.engine.model_spec import legacy_proxy_fingerprint, proxy_graphs
from openkws.engine.spotter import Enrollment, Spotter
from openkws.keywords.sensitivity import Sensitivity
from openkws.keywords.store import KeywordRecord
from openkws.text.tts import TTSError

log = logging.getLogger("openkws")

# text: a text keyword; kept: the stored proxy; relabel: kept, its old-format fingerprint rewritten;
# remade: synthesized again; old: the stored proxy (TTS failed); text_fallback: the text proxy (TTS failed)
Outcome = Literal["text", "kept", "relabel", "remade", "old", "text_fallback"]
NAMED = 10  # keywords named in a warning


@dataclass(frozen=True)
class Restored:
    row: Enrollment
    outcome: Outcome


def _vector(r: KeywordRecord, spotter: Spotter) -> bool:
    return r.proxy is not None and r.proxy.shape == (spotter.spec.embedding_dim,)


def scorable(r: KeywordRecord, spotter: Spotter) -> bool:
    """Whether ``r``'s stored proxy is a vector of this model's acoustic graphs (so its bank scores it)."""
    return _vector(r, spotter) and proxy_graphs(r.proxy_model) == spotter.acoustic_fingerprint


def restore(r: KeywordRecord, spotter: Spotter, make: Callable[[str, str], np.ndarray]) -> Restored:
    """How stored keyword ``r`` enters the index (``make(text, mode)``: a fresh acoustic proxy by TTS)."""
    row = Enrollment(r.id, r.tenant, r.text, r.phonemes, r.threshold)
    if r.proxy_mode == "text":
        return Restored(row, "text")
    stored = replace(row, mode=r.proxy_mode, proxy=r.proxy)
    if _vector(r, spotter) and r.proxy_model == spotter.proxy_fingerprint_for(r.proxy_mode):
        return Restored(stored, "kept")
    if _vector(r, spotter) and r.proxy_model == legacy_proxy_fingerprint(spotter.spec):
        return Restored(stored, "relabel")
    try:
        return Restored(replace(row, mode=r.proxy_mode, acoustic=make(r.text, r.proxy_mode)), "remade")
    except TTSError as err:
        if scorable(r, spotter):
            log.warning(
                "keyword %d (%r, proxy %s) keeps its stored proxy and threshold: the model now makes "
                "its proxy another way (whitening added, removed or swapped), but TTS failed (%s)",
                r.id,
                r.text,
                r.proxy_mode,
                err,
            )
            return Restored(stored, "old")
        log.warning(
            "keyword %d (%r, proxy %s) uses its text proxy at the default sensitivity: its acoustic "
            "proxy was made by another model and TTS failed (%s)",
            r.id,
            r.text,
            r.proxy_mode,
            err,
        )
        return Restored(row, "text_fallback")


def new_threshold(
    r: KeywordRecord,
    restored: Restored,
    proxy: np.ndarray,
    spotter: Spotter,
    sensitivity: Sensitivity,
    default: Callable[[ProxyMode, np.ndarray, Sequence[str]], float],
) -> tuple[float, bool]:
    """(threshold, carried) of a keyword whose ``proxy`` was re-made or fell back to text: carried
    when ``r``'s stored proxy can be scored on this model's bank (:meth:`Sensitivity.carried`), else
    ``default(mode, proxy, phonemes)``, what a new enrollment gets: never the stale raw threshold."""
    if restored.outcome == "remade" and scorable(r, spotter):
        assert r.proxy is not None
        if np.allclose(r.proxy, proxy, atol=1e-6):  # made again the same (a file renamed or re-listed)
            return r.threshold, True
        thr = sensitivity.carried(r.proxy, r.threshold, proxy, r.phonemes)  # None without a bank
        if thr is not None:
            return thr, True
    return default(restored.row.mode, proxy, r.phonemes), False


def report(carried: Sequence[KeywordRecord], reset: Sequence[KeywordRecord]) -> None:
    """One warning per kind of threshold change, naming the keywords."""
    if carried:
        log.warning(
            "%d tts/both keywords got new proxies (the model's whitening was added, removed or "
            "changed): their thresholds moved to keep the false-alarm rate the calibration bank "
            "expected of their previous proxies: %s",
            len(carried),
            named(carried),
        )
    if reset:
        log.warning(
            "%d tts/both keywords had proxies of other acoustic graphs, or no calibration bank to carry "
            "their sensitivity: their thresholds are reset to the default sensitivity (not kept as raw "
            "cosines of another scale): %s",
            len(reset),
            named(reset),
        )


def named(records: Sequence[KeywordRecord]) -> str:
    """``12 'hey jarvis', 13 'stop', ... and 4 more`` for a log line."""
    shown = ", ".join(f"{r.id} {r.text!r}" for r in records[:NAMED])
    return shown + (f" and {len(records) - NAMED} more" if len(records) > NAMED else "")
