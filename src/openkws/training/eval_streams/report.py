"""Outputs of ``openkws eval streams``: ``streams.json``, a DET plot, a score histogram, a
calibration plot, and the markdown table that ``docs/BENCHMARKS.md`` carries (between markers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

from openkws.training.eval_streams.scoring import TARGETS, Scores

DOC_BEGIN = "<!-- eval-streams:begin -->"
DOC_END = "<!-- eval-streams:end -->"
BREAKDOWN_BUDGETS = ("0.5", "1")  # FA/h per keyword of the by-condition and by-length tables
LABELS = {
    "openkws-text": "openkws, text proxies",
    "openkws-tts": "openkws, TTS proxies",
    "openkws-both": "openkws, text+TTS proxies",
    "pocketsphinx": "pocketsphinx KWS",
    "efficientword": "EfficientWord-Net (TTS templates)",
}


class StreamsReport(TypedDict):
    """``streams.json``: what :func:`openkws.training.eval_streams.run.run_streams` returns."""

    manifest: str
    model: str
    model_version: str
    conditions: list[str]
    negatives: list[str]
    floor: float
    engine: dict[str, object]
    keywords: int
    clips: int
    positive_hours: float
    negative_hours: float
    negative_minutes_by_kind: dict[str, float]
    systems: dict[str, dict[str, Any]]  # per system: summarize()'s nested FRR/FA tables
    calibration: NotRequired[dict[str, Any]]  # calibration_report(), when the model has a bank
    vad: NotRequired[dict[str, float]]  # gate_share(), with --vad
    wall_s: NotRequired[float]


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * float(x):.1f}%"


def _vad_line(report: StreamsReport) -> str:
    share = report.get("vad")
    if not share:
        return ""
    parts = ", ".join(f"{c} {100 * v:.0f}%" for c, v in share.items())
    return f" Decoded through the service's VAD gate; audio reaching the engine: {parts}."


def markdown(report: StreamsReport) -> str:
    """The streams tables (FRR per budget, per condition, per phone length) from a report dict."""
    systems = report["systems"]
    conds = list(report["conditions"])
    lines = [
        f"Manifest `{report['manifest']}`: {report['clips']} clips, {report['keywords']} keyword texts, all "
        f"enrolled at once; each clip in 2-3 s of background under {len(conds)} conditions "
        f"({report['positive_hours']} h). Negatives: {report['negative_hours']} h "
        f"({', '.join(f'{k} {v} min' for k, v in report['negative_minutes_by_kind'].items())}); "
        "a keyword's false alarms are counted outside segments whose transcript contains it. "
        "FA/h is per keyword (false alarms / keywords / hours) at one global threshold per system."
        + _vad_line(report),
        "",
        "| system | FRR @ 0.1 FA/h | FRR @ 0.5 FA/h | FRR @ 1 FA/h | total FA/h at 1 | delay p50 / p95 at 1 (ms) "
        "| clips scored | streams scored |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in systems.items():
        t = s["targets"]
        d = t["1"]["delay_ms"]
        delay = "n/a" if d["p50"] is None else f"{d['p50']:.0f} / {d['p95']:.0f}"
        lines.append(
            f"| {LABELS.get(name, name)} | {_pct(t['0.1']['frr'])} | {_pct(t['0.5']['frr'])} | "
            f"{_pct(t['1']['frr'])} | {t['1']['fa_per_hour_total']:.1f} | {delay} | {s['positives']} | "
            f"{s.get('streams_scored', 'all')} |"
        )
    groups = ("1-3", "4-5", "6-8", "9+")
    for budget in BREAKDOWN_BUDGETS:  # the targets are at 0.5 FA/h; 1 FA/h for continuity
        lines += [
            "",
            f"FRR at {budget} FA/h per keyword, by condition:",
            "",
            "| system | " + " | ".join(conds) + " |",
            "| --- |" + " --- |" * len(conds),
        ]
        for name, s in systems.items():
            by = s["targets"][budget]["by_condition"]
            lines.append(
                f"| {LABELS.get(name, name)} | "
                + " | ".join(_pct(by[c]) if c in by else "not run" for c in conds)
                + " |"
            )
        lines += [
            "",
            f"FRR at {budget} FA/h per keyword, by keyword length in phones (clips):",
            "",
            "| system | " + " | ".join(f"{g} phones" for g in groups) + " |",
            "| --- |" + " --- |" * len(groups),
        ]
        for name, s in systems.items():
            bp = s["targets"][budget]["by_phones"]
            lines.append(
                f"| {LABELS.get(name, name)} | "
                + " | ".join(f"{_pct(bp[g]['frr'])} ({bp[g]['n']})" if g in bp else "n/a" for g in groups)
                + " |"
            )
    cal = report.get("calibration")
    if isinstance(cal, dict):
        lines += [
            "",
            f"Calibration on the recorded-speech negatives ({cal['recorded_keyword_hours']} keyword-hours; "
            f"bank {cal['bank_hours']:.2f} h): per-keyword thresholds from the model's bank at each target. "
            "Pooled: all keywords' false alarms over all their hours, divided by the target. The per-keyword "
            "median is 0 where most keywords have no false alarm in their few minutes of recorded speech.",
            "",
            "| proxy | target FA/h | measured FA/h per keyword | pooled measured / predicted "
            "| median over keywords of measured / predicted | median threshold |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for kind, rows in cal["proxies"].items():
            for r in rows:
                ratio = "n/a" if r["median_ratio"] is None else f"{r['median_ratio']:.2f}"
                lines.append(
                    f"| {kind} | {r['target']:g} | {r['measured']:.2f} | {r['measured'] / r['target']:.2f} | "
                    f"{ratio} | {r['median_threshold']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def update_doc(doc: Path, table: str, header: str) -> None:
    """Replace (or append) the marked streams section of ``doc``."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    block = f"{DOC_BEGIN}\n{header}\n\n{table}{DOC_END}"
    if DOC_BEGIN in text and DOC_END in text:
        a, b = text.index(DOC_BEGIN), text.index(DOC_END) + len(DOC_END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def write_doc(
    report: StreamsReport, table: str, out: Path, doc: Path, command: str, cached_only: bool
) -> None:
    """The streams section of ``doc`` (e.g. docs/BENCHMARKS.md): ``table``, the plots of ``out`` copied
    beside ``doc``, and the ``command`` that made them."""
    figs = doc.parent / "benchmarks"
    figs.mkdir(parents=True, exist_ok=True)
    links = []
    for name, title in (("det", "DET"), ("score_hist", "score histogram"), ("calibration", "calibration")):
        if (out / f"{name}.png").is_file():
            shutil.copyfile(out / f"{name}.png", figs / f"streams_{name}.png")
            links.append(f"![streams {title}](benchmarks/streams_{name}.png)")
    how = (
        "tables from the per-stream events that earlier runs of the same command decoded and cached "
        f"(`--cached-only`, {report['wall_s']} s)."
        if cached_only
        else f"wall time {report['wall_s']} s."
    )
    header = (
        f"## Streams on real speech (`openkws eval streams`)\n\nCommand: `{command}`; "
        f"model `{report['model_version']}`; {how}"
    )
    update_doc(doc, table + "\n" + "\n".join(links) + "\n", header)


def write_outputs(
    report: StreamsReport, scores: dict[str, Scores], phones: dict[str, int], out: Path
) -> None:
    import matplotlib  # lazy: heavy, only when plots are written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "streams.json").write_text(json.dumps(report, indent=1))
    (out / "streams.md").write_text(markdown(report))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, sc in scores.items():
        fa = sc.all_fa()
        thr = np.unique(np.concatenate([fa[:20000], [np.inf]]))
        xs = sc.fa_counts(thr) / max(sc.keyword_hours, 1e-12)
        lv = np.sort(sc.levels())
        ys = np.searchsorted(lv, thr, side="left") / max(len(lv), 1)  # share of clips whose level < threshold
        ax.step(xs, ys, where="post", label=LABELS.get(name, name))
    for t in TARGETS:
        ax.axvline(t, color="grey", lw=0.5, ls=":")
    ax.set_xscale("symlog", linthresh=0.05)
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false alarms per hour per keyword")
    ax.set_ylabel("false rejection rate")
    ax.set_title("eval streams: DET")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "det.png", dpi=120)
    plt.close(fig)
    kws = [n for n in scores if n.startswith("openkws")]
    fig, axes = plt.subplots(1, max(1, len(kws)), figsize=(5 * max(1, len(kws)), 3.5), squeeze=False)
    for ax, name in zip(axes[0], kws, strict=False):
        sc = scores[name]
        lv = sc.levels()
        bins = np.linspace(float(report["floor"]), 1.0, 50)
        ax.hist(lv[np.isfinite(lv)], bins=bins, alpha=0.6, density=True, label="positives (best event)")
        ax.hist(sc.all_fa(), bins=bins, alpha=0.6, density=True, label="negatives (false-alarm events)")
        ax.set_title(LABELS.get(name, name), fontsize=9)
        ax.set_xlabel("score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "score_hist.png", dpi=120)
    plt.close(fig)
    cal = report.get("calibration")
    if isinstance(cal, dict):
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
        for kind, rows in cal["proxies"].items():
            ax.plot([r["target"] for r in rows], [max(r["measured"], 1e-2) for r in rows], "o-", label=kind)
        lim = [0.3, 100]
        ax.plot(lim, lim, "k--", lw=0.8, label="measured = predicted")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("predicted FA/h per keyword (bank target)")
        ax.set_ylabel("measured FA/h per keyword (recorded speech)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "calibration.png", dpi=120)
        plt.close(fig)
