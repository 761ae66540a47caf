"""Draw a :class:`~openkws.engine.score_trace.ScoreTrace` as a PNG: why a keyword fired or not.

One line per keyword (its score over time), its threshold dashed in the same colour, a marker at
each detection and a cross at each near miss. matplotlib is optional (``pip install
'openkws[plot]'``) and imported only when drawing.

    >>> from openkws import KeywordSpotter                          # doctest: +SKIP
    >>> trace = KeywordSpotter().detect_file("clip.wav", trace=True)  # doctest: +SKIP
    >>> plot_trace(trace, "scores.png")                              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openkws.engine.events import Candidate, Detection, NearMiss
from openkws.engine.score_trace import KeywordTrace, ScoreTrace

__all__ = ["PlotUnavailable", "plot_trace", "trace_from_response"]

PLOT_EXTRA = "pip install 'openkws[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never a window
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as e:
        raise PlotUnavailable(
            f"drawing a plot needs matplotlib, which is not installed ({e.name}); {PLOT_EXTRA}"
        ) from None
    return plt


def plot_trace(trace: ScoreTrace, path: Path | str, title: str | None = None) -> Path:
    """Write ``trace`` as a PNG at ``path`` (parents must exist); returns the path.

    Raises :class:`PlotUnavailable` without matplotlib, ``ValueError`` for an empty trace."""
    if not len(trace.times_ms) or not trace.keywords:
        raise ValueError(
            "nothing to plot: the trace has no scored frames or no keywords (audio shorter than the "
            "shortest window, or no keyword enrolled)"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        by_id: dict[int, str] = {}
        for i, k in enumerate(trace.keywords):
            c = by_id[k.keyword_id] = colors[i % len(colors)]
            t = k.times_ms / 1000.0
            ax.plot(
                t, k.scores, color=c, lw=1.6, label=f"{k.text} (thr {k.threshold:.2f}, peak {k.peak:.2f})"
            )
            ax.axhline(k.threshold, color=c, ls="--", lw=1.0, alpha=0.8)
        for d in trace.detections:
            c = by_id.get(d.keyword_id, "black")
            ax.axvspan(d.start_ms / 1000.0, d.end_ms / 1000.0, color=c, alpha=0.08)
            ax.plot([d.decided_ms / 1000.0], [d.score], marker="v", ms=10, color=c, mec="black")
        for m in trace.near_misses:
            for cand in m.candidates:
                ax.plot(
                    [m.time_ms / 1000.0],
                    [cand.score],
                    marker="x",
                    ms=7,
                    color=by_id.get(cand.keyword_id, "gray"),
                )
        ax.set_xlabel("time (s)")
        ax.set_ylabel("score (cosine)")
        lo = min(0.0, float(np.nanmin([np.nanmin(k.scores) for k in trace.keywords])))
        ax.set_ylim(lo, 1.0)
        ax.set_xlim(0.0, float(trace.times_ms[-1]) / 1000.0)
        ax.grid(alpha=0.3)
        n = len(trace.detections)
        ax.set_title(
            title or f"keyword scores: {n} detection(s); dashed = threshold, ▼ = detection, x = near miss"
        )
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def trace_from_response(res: dict[str, Any]) -> ScoreTrace:
    """A ``POST /v1/detect?trace=true`` JSON response -> :class:`ScoreTrace`; ``ValueError`` without a trace."""
    t = res.get("trace")
    if not t:
        raise ValueError("the response has no trace; ask POST /v1/detect with trace=true")
    times = np.asarray(t["times_ms"], np.float64)
    keywords = tuple(
        KeywordTrace(
            k["id"],
            k["text"],
            k["threshold"],
            times,
            np.array([np.nan if v is None else v for v in k["scores"]], np.float32),
        )
        for k in t["keywords"]
    )
    dets = tuple(
        Detection(
            d["keyword_id"],
            d["text"],
            d["score"],
            d["threshold"],
            d["start_ms"],
            d["end_ms"],
            d["decided_ms"],
        )
        for d in res.get("detections", [])
    )
    near = tuple(
        NearMiss(
            m["time_ms"],
            tuple(Candidate(c["keyword_id"], c["text"], c["score"], c["threshold"]) for c in m["candidates"]),
        )
        for m in res.get("near_misses", [])
    )
    return ScoreTrace(times, keywords, dets, near)
