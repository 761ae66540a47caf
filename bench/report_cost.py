"""Cost sections of the benchmark report: per-stream speed, memory and enrollment time of every
system, and the openkws service under concurrent streams."""

from __future__ import annotations

from bench.report_view import NOT_MEASURED, View, display_name, in_order


def speed_section(view: View) -> list[str]:
    sp = view.res["speed"]
    lines = [
        "## Speed and cost",
        "",
        "Command: `python -m bench.run_all --protocols speed` (or `python -m bench.speed --system NAME "
        "--keywords N --audio WAV`). Each (system, keyword count) runs in its own process pinned to one CPU core, "
        "on the same audio; the real-time factor (RTF = compute time / audio time, lower is better) is the median "
        "of the repetitions, peak RSS is the process's maximum resident memory.",
        "",
    ]
    systems = sp.get("systems", {})
    if not systems:
        return lines + [f"{NOT_MEASURED}.", ""]
    reps = sp.get("reps", "?")
    lines.append(
        f"Audio: {sp.get('audio_s', '?')} s of a negative stream; {reps} repetition{'s' if reps != 1 else ''} "
        "per figure, each in a fresh process, interleaved across systems."
    )
    lines.append("")
    counts = sorted({row["keywords"] for rows in systems.values() for row in rows})
    lines += ["Single-thread RTF by number of keywords enrolled:", "",
              "| system | " + " | ".join(str(n) for n in counts) + " |", "| --- |" + " --- |" * len(counts)]  # fmt: skip
    for s in in_order(systems):
        cells = []
        for n in counts:
            row = next((r for r in systems[s] if r.get("keywords") == n), None)
            if row is None:
                cells.append("-")
            elif "rtf" not in row:
                cells.append("failed")
            else:
                mark = "*" if row.get("copies_of_bundled_models") else ""
                cells.append(view.v(f"{row['rtf']:.4f}{mark}"))
        lines.append(f"| {display_name(s)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "\\* openWakeWord has five models; larger counts load copies of them (the cost of that many per-word models).",
        "",
    ]
    lines += [
        "| system | peak RSS (100 keywords; openWakeWord: 5) | enroll 100 keywords | add one keyword |",
        "| --- | --- | --- | --- |",
    ]
    for s in in_order(systems):
        row = view.speed_row(s, 5 if s == "openwakeword" else 100)
        if row is None:
            continue
        add = row.get("add_keyword") or {}
        if add.get("median_s") is not None:
            add_txt = view.v(f"{1000 * add['median_s']:.1f} ms") + f" ({add['what']})"
            if add.get("tts_for_4_clips_median_s") is not None:
                tts_ms = 1000 * add["tts_for_4_clips_median_s"]
                add_txt += "; synthesizing the 4 clips took " + view.v(f"{tts_ms:.0f} ms")
        else:
            add_txt = add.get("documented", "")
        rss, enroll = view.v(f"{row['peak_rss_mib']:.0f} MiB"), view.v(f"{row['enroll_s']:.2f} s")
        lines.append(f"| {display_name(s)} | {rss} | {enroll} | {add_txt} |")
    lines.append("")
    k100, k1 = view.speed_row("openkws", 100), view.speed_row("openkws", 1)
    if k100:
        lines += [
            "Ratio of each peer's RTF to openkws' (above 1: openkws is cheaper):",
            "",
            "| peer | configuration | ratio |",
            "| --- | --- | --- |",
        ]
        for s, n, ref, label in (("openwakeword", 5, k100, "its 5 models vs openkws with 100 keywords"),
                                 ("pocketsphinx", 100, k100, "100 keywords each"),
                                 ("efficientword", 100, k100, "100 keywords each"),
                                 ("pocketsphinx", 1, k1, "1 keyword each"),
                                 ("efficientword", 1, k1, "1 keyword each")):  # fmt: skip
            row = view.speed_row(s, n)
            if row and ref:
                ratio = view.v(f"{row['rtf'] / ref['rtf']:.2f}x")
                lines.append(f"| {display_name(s)} | {label} | {ratio} |")
        lines.append("")
    return lines


def service_section(view: View) -> list[str]:
    sv = view.res["service"]
    lines = ["## openkws service: concurrency and latency", "",
             "From `bench/service_bench.py` (the service engineer's), which `run_all` calls with the same model: real "
             "websocket clients on 127.0.0.1 each sending speech paced in real time, at increasing numbers of "
             "concurrent streams; detection latency is the arrival of a detection minus the wall time the client "
             "sent the audio that completed the scored window.", ""]  # fmt: skip
    if not sv or sv.get("status") != "ok":
        why = (sv or {}).get("status", "not run")
        return lines + [f"{NOT_MEASURED} ({why}).", ""]
    r = sv.get("result", {})
    lines.append(f"Command: `python {sv.get('command', '-m bench.service_bench')}`.")
    lines.append("")
    best = r.get("max_realtime_streams_p95_le_500ms")
    lines.append(
        f"- Concurrent real-time streams sustained with p95 latency <= 500 ms on 2 cores: **{view.v(str(best))}**."
    )
    ks = r.get("keyword_scaling") or {}
    if ks:
        lines.append(f"- Engine CPU per audio second, 10 vs 10,000 keywords enrolled: {view.v(str(ks.get('cpu_s_per_audio_s_10')))} vs "
                     f"{view.v(str(ks.get('cpu_s_per_audio_s_10000')))} (ratio {view.v(str(ks.get('ratio_10000_vs_10')))}).")  # fmt: skip
    en = r.get("enrollment") or {}
    if en:
        lines.append(f"- Enrolling a keyword over HTTP ({en.get('keywords')} one by one): p50 {view.v(str(en.get('p50_ms')) + ' ms')}, "
                     f"p95 {view.v(str(en.get('p95_ms')) + ' ms')}.")  # fmt: skip
    levels = r.get("streams") or []
    if levels:
        lines += ["", "| streams | detection latency p50 | p95 | server CPU RTF per stream | errors | p95 <= 500 ms |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for lv in levels:
            lines.append(f"| {lv.get('streams')} | {view.v(str(lv.get('p50_ms_end')) + ' ms')} | {view.v(str(lv.get('p95_ms_end')) + ' ms')} | "
                         f"{view.v(str(lv.get('server_cpu_rtf_per_stream')))} | {view.v(str(lv.get('errors')))} | {view.v('yes' if lv.get('pass') else 'no')} |")  # fmt: skip
    lines.append("")
    return lines
