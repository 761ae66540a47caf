"""The measurement tables of the perf section of docs/BENCHMARKS.md (:mod:`bench.perf_doc`), one
function a step of ``bench/out/perf.json``: where the CPU goes, the real-time factor beside
openWakeWord, cost against the number of keywords, voice-activity gating, algorithmic delay, and
the service under load. A step that did not run gives no table."""

from __future__ import annotations

from typing import Any


def result(doc: dict[str, Any], step: str) -> Any:
    return (doc.get(step) or {}).get("result")


def load_note(doc: dict[str, Any], step: str) -> str:
    la = (doc.get(step) or {}).get("load_average_before")
    return (
        f"load average {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} on {doc['machine']['cpus']} cores"
        if la
        else "load not recorded"
    )


def pct2(x: float) -> str:
    return f"{100 * x:.2f}%"


def projected(service: dict[str, Any], cpus: int) -> int:
    """Streams a dedicated machine of ``cpus`` cores would carry at 80% CPU, from the server's measured
    CPU per stream-second at the largest level run that admitted a stream (the busier the server, the
    lower its per-stream CPU)."""
    rtfs = [r["server_cpu_rtf_per_stream"] for r in service["streams"] if r["server_cpu_rtf_per_stream"]]
    return int(0.8 * cpus / rtfs[-1]) if rtfs else 0


def variant(label: str) -> str:
    return "int8" if "@" in label else "float"


def profile_table(doc: dict[str, Any]) -> list[str]:
    pr = result(doc, "profile")
    if not pr:
        return []
    runs = pr["runs"]
    comps = ["mel", "embedding", "acoustic_frames", "acoustic_pool", "scoring", "other"]
    head = " | ".join(f"{r['variant']}, {r['mode']}" for r in runs)
    out = [
        "### Where the CPU goes (profile before and after)",
        "",
        f"`python -m bench.profile_frontend`: {runs[0]['streams']} streams of speech fed 100 ms at a time with "
        f"{runs[0]['keywords']} keywords, decoded each alone (`single`) or together (`batched`); CPU per component "
        f"per second of stream audio (real-time factor), and per call. {load_note(doc, 'profile')}.",
        "",
        f"| component | {head} |",
        "| --- |" + " --- |" * len(runs),
    ]
    for c in comps:
        cells = []
        for r in runs:
            x = r["components"][c]
            per = f", {x['ms_per_call']:.3f} ms/call" if "ms_per_call" in x else ""
            cells.append(f"{x['rtf_per_stream']:.5f}{per}")
        out.append(f"| {c} | {' | '.join(cells)} |")
    totals = " | ".join("**{:.5f}**".format(r["rtf_per_stream"]) for r in runs)
    out.append(f"| **total RTF per stream** | {totals} |")
    sw = pr.get("embedding_sweep") or []
    if sw:
        out += [
            "",
            f"Speech embedding alone: one call of {sw[0]['rows']} rows against {sw[0]['rows']} calls of one row "
            "(process CPU and wall ms), by onnxruntime session options (`openkws.engine.ort_options`):",
            "",
            "| model | options | 1-row calls CPU | 1-row calls wall | one batched call CPU | one batched call wall |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {s.get('variant', 'float')} | {s['options']} | {s['one_row_calls_cpu_ms']} | "
            f"{s['one_row_calls_wall_ms']} | {s['batched_call_cpu_ms']} | {s['batched_call_wall_ms']} |"
            for s in sw
        ]
        out += [
            "",
            "Why one call of many rows is not cheaper on a CPU: the speech embedding is 20 small "
            "convolutions, which onnxruntime's CPU kernels run row by row (im2col + GEMM per image), so a "
            "batch saves only the per-call overhead, while its activations are that many times larger and "
            "leave the L2 cache: in fp32 the batched call costs about as much CPU as the single calls or a "
            "little more, in int8 a little less. A second intra-op thread spin-waits between the small "
            "operators: it doubles the CPU of one-row calls, and gains wall time only for a big call on an "
            "idle core. On a busy 2-core machine the wall-clock gap of the issue (one 32-row call 57 ms, 32 "
            "one-row calls 42 ms) is this plus preemption; the wall columns above show how noisy wall time is "
            "here. The int8 graph needs graph optimisation `all` (at `basic` its quantise/dequantise pairs are "
            "not fused and it is slower than fp32). Batching pays on the CUDA provider; on CPU the wins are "
            "int8, batching the small acoustic head across streams (the `single` vs `batched` columns), and "
            "skipping silence.",
        ]
    out.append("")
    return out


def speed_table(doc: dict[str, Any]) -> list[str]:
    sp = result(doc, "speed")
    if not sp:
        return []
    out = [
        "### Real-time factor beside openWakeWord (one run)",
        "",
        f"`bench.speed` (via the suite): each system in its own process pinned to one core, {sp['audio']}, "
        f"openkws streamed in {sp['chunk_ms']} ms chunks as a live stream is; median of the rounds. "
        f"{load_note(doc, 'speed')}.",
        "",
        "| system | keywords | RTF (process CPU) | rounds | openWakeWord RTF / this |",
        "| --- | --- | --- | --- | --- |",
    ]
    oww = next(
        (r[0]["rtf"] for k, r in sp["systems"].items() if k == "openwakeword" and r and "rtf" in r[0]), None
    )
    for label, res in sp["systems"].items():
        for r in res:
            if "rtf" not in r:
                out.append(f"| {label} | {r.get('keywords')} | error: {r.get('error')} | | |")
                continue
            name = "openWakeWord (its 5 models)" if label == "openwakeword" else f"openkws ({variant(label)})"
            ratio = f"{oww / r['rtf']:.2f}x" if oww and label != "openwakeword" else ""
            out.append(f"| {name} | {r['keywords']} | {r['rtf']:.4f} | {r.get('rtf_rounds')} | {ratio} |")
    return out + [""]


def scaling_table(doc: dict[str, Any]) -> list[str]:
    sc = result(doc, "scaling")
    if not sc:
        return []
    out = [
        "### Cost with 10,000 keywords against 10",
        "",
        f"Engine CPU per audio second, 16 streams decoded together, 80 ms steps. {load_note(doc, 'scaling')}.",
        "",
        "| model | 10 keywords | 10,000 keywords | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for label, r in sc.items():
        out.append(
            f"| {label} | {r['cpu_s_per_audio_s_10']} | {r['cpu_s_per_audio_s_10000']} | {r['ratio_10000_vs_10']} |"
        )
    out += [
        "",
        "The extra cost is scoring every window against every keyword: 5 windows per 80 ms frame x "
        "10,000 keywords x 256 dimensions, about 160 M multiply-adds per stream-second. It is a fixed amount per "
        "stream, so a cheaper front-end makes the ratio larger. With 2,048 keywords or more the engine scores "
        "with an int8 prefilter (`openkws.engine.prefilter`: onnxruntime `MatMulInteger` on the CPU's VNNI "
        "units, a rigorous bound on the quantisation error, fp32 rescoring of the few pairs near a threshold), "
        "which reports exactly the pairs the fp32 product does (`tests/service/test_scoring.py`). On a GPU the "
        "FAISS index takes the product off the CPU.",
        "",
    ]
    return out


def gating_table(doc: dict[str, Any]) -> list[str]:
    g = result(doc, "gating")
    if not g:
        return []
    out = [
        "### Voice-activity gating",
        "",
        "`python -m bench.gating` (int8 model, 100 keywords): streams fed 100 ms at a time through WebRTC's VAD "
        "(`openkws.engine.vad`, mode 3, 1.2 s pre-roll, 0.8 s hangover) or straight, decoded together; CPU "
        "includes the VAD. The 25%-speech audio is the same utterances separated by quiet noise (about "
        f"-50 dBFS). {load_note(doc, 'gating')}.",
        "",
        "| speech | VAD | RTF per stream | audio reaching the engine | keywords detected | other events |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in g["rows"]:
        found = f"{r['keywords_detected']}/{r['keywords_spoken']}" if "keywords_detected" in r else "-"
        out.append(
            f"| {r['speech_fraction']:.0%} | {r['vad']} | {r['rtf_per_stream']:.5f} | {r['fed_fraction']:.0%} | "
            f"{found} | {r.get('other_events', r['detections'])} |"
        )
    out += [
        "",
        "With gaps of a few seconds the pre-roll and hangover keep part of every gap; longer silences are "
        "dropped entirely. Streams default to `vad: on` (`OPENKWS_VAD`): on the synthetic evaluation streams "
        "the gate costs at most 0.1 point of FRR (issue 24, *The fast path on the evaluation streams*), and each "
        "onset's pre-roll burst is decoded as catch-up work off the live streams' path (docs/SERVICE.md, "
        "*Catch-up batches*). Continuous speech gains nothing from the gate; quiet rooms do.",
        "",
    ]
    return out


def latency_table(doc: dict[str, Any]) -> list[str]:
    lat = result(doc, "latency")
    if not lat:
        return []
    out = [
        "### Algorithmic delay",
        "",
        "The engine alone on 60 s of speech in 100 ms chunks, on the audio's own clock (compute time is "
        "not counted, so load does not change it): from the end of each spoken keyword to the end of the "
        "chunk whose decode emitted it. This is the floor under the service's latency, whatever the "
        "hardware; the 500 ms target at p95 is not reachable with the default 240 ms decision hold.",
        "",
        "| decision hold | detected | p50 | p95 |",
        "| --- | --- | --- | --- |",
    ]
    for r in lat:
        out.append(
            f"| {r['hold_ms']} ms | {r['detected']}/{r['keywords_spoken']} | {r['p50_ms']} ms | {r['p95_ms']} ms |"
        )
    out += [
        "",
        "A window ends some way after the keyword it scores best (the model was trained on keywords centred "
        "in windows with 0.25 s of context on each side, so a short keyword's best window ends about half the "
        "window's slack after it), and the decider then waits up to `hold_ms` for a higher peak.",
        "",
    ]
    return out


def service_table(doc: dict[str, Any]) -> list[str]:
    sv = result(doc, "service")
    if not sv:
        return [
            "### The service under load",
            "",
            "Not run in this round (`python -m bench.perf_suite --only service,doc`).",
            "",
        ]
    out = [
        "### The service under load (wall clock)",
        "",
        "`bench.service_bench`: websocket clients on the same machine, 100 keywords, 100 ms frames in real time; "
        "latency from the end of the spoken keyword (algorithmic delay included) to the event's arrival. "
        "Wall-clock figures on a shared machine: the load average before each level and the cores the server "
        "actually got are beside each row; the projection divides 80% of the cores by the server's CPU per "
        "stream-second.",
        "",
        "| audio | streams | p50 | p95 | keywords detected | server RTF per stream | server cores busy | load before | pass |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in sv.items():
        for r in res["streams"]:
            out.append(
                f"| {name} | {r['streams']} | {r.get('p50_ms_spoken')} ms | {r.get('p95_ms_spoken')} ms | "
                f"{r.get('keywords_detected')}/{r.get('keywords_spoken')} | {r['server_cpu_rtf_per_stream']} | "
                f"{r['server_cores_busy']} | {r.get('load_average_before')} | {'yes' if r['pass'] else 'no'} |"
            )
    for name, res in sv.items():
        out.append(
            f"\n{name}: {projected(res, doc['machine']['cpus'])} streams projected for {doc['machine']['cpus']} "
            "dedicated cores at 80% CPU."
        )
    return out + [""]
