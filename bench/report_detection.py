"""Detection sections of the benchmark report: the issue's targets, streaming detection (DET, delay,
FRR by keyword length) and the LibriPhrase-style pairs."""

from __future__ import annotations

from bench.report_view import NOT_MEASURED, View, display_name, in_order, pct


def targets(view: View) -> list[tuple[str, str, str]]:
    rows = []
    ok, oww = view.frr("openkws", "a", "0.5"), view.frr("openwakeword", "a", "0.5")
    if view.show and ok is not None and oww is not None:
        met = ok <= oww + 0.02
        rows.append(("Set (a): FRR at 0.5 FA/h within 2 points of openWakeWord's per-word models",
                     f"openkws {pct(ok)} vs openWakeWord {pct(oww)}", "met" if met else "**missed**"))  # fmt: skip
    else:
        rows.append(
            (
                "Set (a): FRR at 0.5 FA/h within 2 points of openWakeWord's per-word models",
                NOT_MEASURED,
                NOT_MEASURED,
            )
        )
    ok1 = view.frr("openkws", "b", "1")
    ps1, ew1 = view.frr("pocketsphinx", "b", "1"), view.frr("efficientword", "b", "1")
    if view.show and ok1 is not None and ps1 is not None and ew1 is not None:
        met = ok1 < ps1 and ok1 < ew1
        rows.append(("Set (b): lower FRR at 1 FA/h than pocketsphinx and EfficientWord-Net",
                     f"openkws {pct(ok1)}, pocketsphinx {pct(ps1)}, EfficientWord-Net {pct(ew1)}",
                     "met" if met else "**missed**"))  # fmt: skip
    else:
        rows.append(
            (
                "Set (b): lower FRR at 1 FA/h than pocketsphinx and EfficientWord-Net",
                NOT_MEASURED,
                NOT_MEASURED,
            )
        )
    k100, o5 = view.speed_row("openkws", 100), view.speed_row("openwakeword", 5)
    if view.show and k100 and o5:
        ratio = o5["rtf"] / k100["rtf"]
        rows.append(("Per-stream CPU at least 2x lower than openWakeWord (openkws with 100 keywords vs its 5 models)",
                     f"openkws {k100['rtf']:.4f} RTF vs openWakeWord {o5['rtf']:.4f} RTF: {ratio:.2f}x",
                     "met" if ratio >= 2.0 else "**missed**"))  # fmt: skip
    else:
        rows.append(
            (
                "Per-stream CPU at least 2x lower than openWakeWord (openkws with 100 keywords vs its 5 models)",
                NOT_MEASURED,
                NOT_MEASURED,
            )
        )
    return rows


def target_section(view: View) -> list[str]:
    lines = ["## Targets (issue 5)", "", "| target | measured | status |", "| --- | --- | --- |"]
    for t, m, s in targets(view):
        lines.append(f"| {t} | {m} | {s} |")
    return lines + [""]


def streaming_section(view: View) -> list[str]:
    st = view.res["streaming"]
    lines = [
        "## Streaming detection (wake-word protocol)",
        "",
        "Command: `python -m bench.run_all --protocols streaming` (part of `make bench`).",
        "",
        "A detection is a hit inside [keyword start, keyword end + 0.5 s]; anything else is a false alarm, "
        "counted over all scored audio (negative and positive streams). FRR is read at the best threshold whose "
        "FA/h is within the budget (a global threshold per system and keyword set; "
        "`frr_linear` in the JSON interpolates the DET curve instead). The delay is algorithmic: from the end of "
        "the keyword to the end of the audio that made the detection fire (compute and queueing excluded).",
        "",
    ]
    for set_name, title in (("a", "Set (a): openWakeWord's five words (all systems)"),
                            ("b", "Set (b): 50 unseen words and phrases (open-vocabulary systems)")):  # fmt: skip
        lines += [
            f"### {title}",
            "",
            "| system | FRR @ 0.5 FA/h | FRR @ 1 FA/h | delay after keyword end at 1 FA/h (p50 / p95) | occurrences | hours scored |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        rows = 0
        for s in in_order(st):
            sm = st[s].get("sets", {}).get(set_name, {}).get("summary")
            if not sm:
                continue
            rows += 1
            d = sm["1"].get("delay_s")
            delay = view.v(f"{1000 * d['p50']:.0f} / {1000 * d['p95']:.0f} ms (n={d['n']})" if d else "n/a")
            lines.append(f"| {display_name(s)} {st[s].get('version', '')} | {view.v(pct(sm['0.5']['frr']))} | "
                         f"{view.v(pct(sm['1']['frr']))} | {delay} | {sm['positives']} | {sm['hours']:.2f} |")  # fmt: skip
        if not rows:
            lines.append(f"| all | {NOT_MEASURED} | {NOT_MEASURED} | {NOT_MEASURED} | | |")
        lines.append("")
        if set_name == "b" and rows:
            lines += ["By keyword length, FRR at the threshold chosen for 1 FA/h over the whole set:", ""]
            groups: list[str] = []
            for s in in_order(st):
                bg = st[s].get("sets", {}).get("b", {}).get("summary", {}).get("1", {}).get("by_group", {})
                groups += [g for g in bg if g not in groups]
            lines += ["| system | " + " | ".join(groups) + " |", "| --- |" + " --- |" * len(groups)]
            for s in in_order(st):
                bg = st[s].get("sets", {}).get("b", {}).get("summary", {}).get("1", {}).get("by_group")
                if bg:
                    cells = [
                        view.v(pct(bg[g]["frr"])) + f" ({bg[g]['positives']})" if g in bg else ""
                        for g in groups
                    ]
                    lines.append(f"| {display_name(s)} | " + " | ".join(cells) + " |")
            lines.append("")
        if view.show and view.img and rows:
            lines += [f"![DET curves, set ({set_name})]({view.img}/det_set_{set_name}.png)", ""]
    return lines


def pairs_section(view: View) -> list[str]:
    pr = view.res["pairs"]
    lines = [
        "## Pairs (LibriPhrase protocol)",
        "",
        "Command: `python -m bench.run_all --protocols pairs`. Pairs come from the data layer's builder "
        "(`openkws.training.data.pairs.build_pairs`): each clip with its own text (match), a random text more than 2 "
        "phoneme edits away (easy) and the closest text within 2 edits (hard), drawn from every text of the set; "
        "metrics are `openkws.training.evaluate.pair_metrics`. Clips are padded with 0.5 s of silence; each system's "
        "score is its best window on the clip (pocketsphinx: the keyphrase's best margin over its phone loop, per "
        "phone; EfficientWord-Net: best cosine against 4 TTS templates of the text). openWakeWord cannot score "
        "arbitrary text and is absent.",
        "",
    ]
    if not pr:
        return lines + [f"{NOT_MEASURED}.", ""]
    for name, r in pr.items():
        split = f", split `{r['split']}`" if r.get("split") else ""
        lines += [f"### {name}", "", f"Manifest `{r.get('manifest', '?')}`{split}.", "",
                  "| system | easy EER | easy AUC | easy AP | hard EER | hard AUC | hard AP | pairs (+/easy/hard) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for s in in_order(r["systems"]):
            x = r["systems"][s]
            if "error" in x:
                lines.append(f"| {display_name(s)} | failed: {x['error']} | | | | | | |")
                continue
            e, h = x["metrics"].get("easy", {}), x["metrics"].get("hard", {})
            c = x["pairs"]
            cells = []
            for m in (e, h):
                cells += [
                    view.v(pct(m.get("eer"))),
                    view.v(f"{m['auc']:.3f}" if m else "n/a"),
                    view.v(f"{m['ap']:.3f}" if m else "n/a"),
                ]
            lines.append(
                f"| {display_name(s)} | "
                + " | ".join(cells)
                + f" | {c['positive']}/{c['easy']}/{c['hard']} |"
            )
        if view.show and view.img:
            lines += ["", f"![pairs {name}]({view.img}/pairs_{name}.png)"]
        lines.append("")
    return lines
