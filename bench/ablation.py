"""Issue 11's ablation table, from the outputs of ``bench/model_eval.sh`` (one folder per row).

    python -m bench.ablation S1=runs/eval/s4-shipped R=runs/eval/robust_full \\
        --label S1="shipped (asyp-long-2026-11-21)" --doc docs/RESULTS.md --doc docs/BENCHMARKS.md

Every figure comes from the JSON/text files the evaluation commands wrote; a missing file is
shown as "not run". The block between ``<!-- robust-ablation:begin/end -->`` is replaced in each
``--doc``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from bench.page_sections import replace_section

BEGIN, END = "<!-- robust-ablation:begin -->", "<!-- robust-ablation:end -->"
CONDITIONS = ("quiet", "noise", "music", "babble", "reverb")
PHONES = ("1-3", "4-5", "6-8", "9+")
BUDGET = "0.5"  # FA/h per keyword: the stream targets


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(x: float | None) -> str:
    return "not run" if x is None else f"{100 * x:.1f}%"


def _pairs(d: Path, name: str) -> str:
    rep = _load(d / name / "pairs.json")
    if rep is None:
        return "not run"
    sys = next(v for k, v in rep["systems"].items() if k.startswith("openkws"))
    return f"{_pct(sys['easy']['eer'])} / {_pct(sys['hard']['eer'])}"


def _user(d: Path, proxy: str) -> str:
    r = _load(d / f"user_{proxy}.json")
    if r is None:
        return "not run"
    return f"{r['hits']}/{r['keyword_sentences']}, {r['false_alarm_sentences']}/{r['other_sentences']}"


def _length(d: Path) -> str:
    p = d / "asterisk" / "length_frr.txt"
    if not p.is_file():
        return "not run"
    found = re.findall(r"FRR (\d+\.\d+)% \(n=\d+, median (\d\.\d+)\)", p.read_text())
    return " / ".join(f"{f}% ({m})" for f, m in found) or "not run"


def tables(rows: list[tuple[str, str, Path]]) -> str:
    out = [
        "Pairs (easy / hard EER), the synthetic background probe (share of running-speech pairs and of cut "
        "phrases at or over 0.65; keyword hits at the threshold where 1% of running-speech pairs fire) and "
        "the new-user test (hits of 60, sentences with a false alarm of 120, default sensitivity):",
        "",
        "| row | model | synthetic test | probe running / partial >= 0.65 | hits @ 1% running "
        "| user test text | user test TTS | Asterisk pairs | Asterisk FRR @ 1% easy FAR by phones <=3 / 4-5 / 6-8 / >=9 (median score) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label, d in rows:
        pr = _load(d / "probe.json")
        probe = (
            "not run" if pr is None else f"{_pct(pr['running_fire_rate'])} / {_pct(pr['partial_fire_rate'])}"
        )
        hits = "not run" if pr is None else _pct(pr["keyword_hit_rate_at_1pct_running"])
        out.append(
            f"| {key} | {label} | {_pairs(d, 'synth')} | {probe} | {hits} | {_user(d, 'text')} | "
            f"{_user(d, 'tts')} | {_pairs(d, 'asterisk')} | {_length(d)} |"
        )
    out += [
        "",
        f"`openkws eval streams` (Asterisk prompts in background, 315 keywords enrolled at once): FRR at {BUDGET} "
        "false alarms per hour per keyword, all clips, by condition and by keyword length in phones:",
        "",
        "| row | proxy | all | "
        + " | ".join(CONDITIONS)
        + " | "
        + " | ".join(f"{p} phones" for p in PHONES)
        + " |",
        "| --- | --- | --- |" + " --- |" * (len(CONDITIONS) + len(PHONES)),
    ]
    for key, _, d in rows:
        rep = _load(d / "streams" / "streams.json")
        for proxy in ("text", "tts"):
            s = None if rep is None else rep["systems"].get(f"openkws-{proxy}")
            if s is None:
                out.append(f"| {key} | {proxy} | not run |" + " |" * (len(CONDITIONS) + len(PHONES)))
                continue
            t = s["targets"][BUDGET]
            conds = [_pct(t["by_condition"].get(c)) for c in CONDITIONS]
            phones = [_pct(t["by_phones"][p]["frr"]) if p in t["by_phones"] else "n/a" for p in PHONES]
            out.append(f"| {key} | {proxy} | {_pct(t['frr'])} | " + " | ".join(conds + phones) + " |")
    return "\n".join(out) + "\n"


def update_doc(doc: Path, block: str) -> None:
    doc.write_text(replace_section(doc.read_text(), BEGIN, END, f"{BEGIN}\n{block}{END}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+", help="KEY=DIR: a bench/model_eval.sh output folder per row")
    ap.add_argument("--label", action="append", default=[], help="KEY=text shown in the model column")
    ap.add_argument("--doc", action="append", type=Path, default=[])
    a = ap.parse_args()
    labels = dict(x.split("=", 1) for x in a.label)
    rows = []
    for item in a.rows:
        key, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            ap.error(f"row {item!r}: expected KEY=DIR with an existing folder")
        rows.append((key, labels.get(key, path), Path(path)))
    block = tables(rows)
    print(block)
    for doc in a.doc:
        update_doc(doc, block)


if __name__ == "__main__":
    main()
