"""`openkws eval streams --vad` (issue 24): streams decoded through the service's voice-activity gate,
by the serving engine, with their own event cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openkws.engine.vad import VadConfig
from openkws.settings import packaged_model_dir
from openkws.training.eval_streams.engine_adapter import TENANT, Event, decode_events
from tests.training.test_eval_streams import fixture_set  # noqa: F401  (fixture)

SR = 16_000


@pytest.fixture(scope="module")
def spoken() -> tuple[np.ndarray, float, float]:
    """8 s of a -60 dBFS noise floor, "computer" (espeak-ng), 3 s of floor: (audio, onset s, offset s)."""
    from openkws.training.data.audio import trim_silence
    from openkws.training.data.tts import synthesize

    word = trim_silence(synthesize("computer", "espeak:en-us+m3", seed=0), 20, 20)
    word = 0.3 * word / np.abs(word).max()
    floor = np.random.default_rng(0).standard_normal(11 * SR).astype(np.float32) * 1e-3
    audio = np.concatenate([floor[: 8 * SR], word, floor[8 * SR :]]).astype(np.float32)
    return audio, 8.0, 8.0 + len(word) / SR


def _spotter(threshold: float):  # type: ignore[no-untyped-def]
    from openkws.engine.spotter import Spotter

    sp = Spotter.load(packaged_model_dir(), device="cpu")
    rows = [(1, TENANT, "computer", sp.pronounce("computer").phonemes, threshold)]
    sp.index.replace_all(sp.entries_from(rows))
    return sp


def test_gate_drops_the_silence_and_keeps_stream_times(spoken: tuple[np.ndarray, float, float]) -> None:
    audio, onset, offset = spoken
    sp = _spotter(-1.0)  # fires wherever the engine computes a window
    plain = decode_events(sp, audio, ["text"])["text"]
    gated = decode_events(sp, audio, ["text"], VadConfig())["text"]
    preroll = VadConfig().preroll_ms / 1e3
    hangover = VadConfig().hangover_ms / 1e3

    def in_silence(e: Event) -> bool:  # webrtcvad takes the first frames for speech (no noise model yet)
        return 3.0 < e.end_s < onset - preroll

    assert any(in_silence(e) for e in plain)  # without the gate the silence is decoded too
    assert gated and len(gated) < len(plain) and not any(in_silence(e) for e in gated)
    # the word's segment (pre-roll .. hangover around it) was decoded, with its events in stream time
    late = [e for e in gated if e.end_s > 3.0]
    assert late and min(e.start_s for e in late) >= onset - preroll - 0.1
    assert max(e.end_s for e in late) <= offset + hangover + 0.5


def test_keyword_after_silence_scores_as_without_the_gate(spoken: tuple[np.ndarray, float, float]) -> None:
    audio, onset, offset = spoken
    sp = _spotter(0.3)
    plain = decode_events(sp, audio, ["text"])["text"]
    gated = decode_events(sp, audio, ["text"], VadConfig())["text"]
    best_plain, best_gated = max(plain, key=lambda e: e.score), max(gated, key=lambda e: e.score)
    assert onset - 0.5 < best_gated.end_s < offset + 1.0  # the word, in stream time
    assert abs(best_gated.end_s - best_plain.end_s) < 0.1
    assert best_gated.score == pytest.approx(best_plain.score, abs=0.02)  # the pre-roll rebuilt its context


def test_vad_events_are_cached_apart(fixture_set: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    from openkws.training.eval_streams.run import StreamsConfig, run_streams

    manifest, neg = fixture_set
    base = {"manifest": manifest, "cache": tmp_path / "cache", "conditions": ("quiet",),
            "negatives": (str(neg),), "proxies": ("text",)}  # fmt: skip
    off = run_streams(StreamsConfig(out=tmp_path / "off", **base))  # type: ignore[arg-type]
    on = run_streams(StreamsConfig(out=tmp_path / "on", vad=True, **base))  # type: ignore[arg-type]
    files = sorted(p.name for p in (tmp_path / "cache" / "events").iterdir())
    assert len(files) == 2 and sum(f.endswith("_vad_f0.4.jsonl") for f in files) == 1
    assert off["engine"]["vad"] is False and on["engine"]["vad"] is True  # type: ignore[index]
    share = on["vad"]  # type: ignore[index]
    assert set(share) == {"all", "quiet", "negative"} and 0.0 < share["quiet"] < 1.0  # gaps of floor dropped
    assert "VAD gate; audio reaching the engine: all" in (tmp_path / "on" / "streams.md").read_text()
    assert "VAD gate" not in (tmp_path / "off" / "streams.md").read_text()
    assert on["systems"]["openkws-text"]["positives"] == off["systems"]["openkws-text"]["positives"] == 3  # type: ignore[index]


def test_cli_vad_switch() -> None:
    from typer.testing import CliRunner

    from openkws.training.eval_cli import eval_app

    r = CliRunner().invoke(eval_app, ["streams", "--help"])
    assert r.exit_code == 0 and "--vad" in r.output and "--no-vad" in r.output
    r = CliRunner().invoke(eval_app, ["streams", "--vad", "on"])  # a switch, not an option with a value
    assert r.exit_code == 2 and "on" in r.output
