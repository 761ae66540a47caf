"""openkws.KeywordSpotter: the in-process API on the packaged model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soxr

from openkws import AudioError, G2PError, KeywordSpotter
from openkws.audiofile import read_audio_file

SR = 16_000


def _feed(kws: KeywordSpotter, audio: np.ndarray, rate: int, chunk: int) -> list[tuple[str, float]]:
    s = kws.create_stream(sample_rate=rate)
    out = []
    for i in range(0, len(audio), chunk):
        s.accept_waveform(audio[i : i + chunk])
        out += s.detections()
    s.input_finished()
    out += s.detections()
    return [(d.text, d.start_ms) for d in out]


def test_detects_typed_keyword_any_rate_dtype_and_chunking(say: Callable[..., np.ndarray]) -> None:
    kws = KeywordSpotter()
    kw = kws.add_keyword("hey jarvis")
    proxy = kws.spotter.index.tenant(kws.tenant).by_id[kw.id].proxy
    assert kw.id == 1 and kw.threshold == kws.sensitivity.threshold(proxy) and kw.guessed == ()
    speech = say("hey jarvis")
    ref = _feed(kws, speech, SR, len(speech))
    assert [t for t, _ in ref] == ["hey jarvis"]
    for rate, dtype, chunk in (
        (44_100, np.int16, 441),
        (8_000, np.float32, 7),
        (48_000, np.float32, 100_000),
    ):
        x = soxr.resample(speech, SR, rate)
        x = (x * 32767).astype(np.int16) if dtype == np.int16 else x.astype(np.float32)
        got = _feed(kws, x, rate, chunk)
        assert [t for t, _ in got] == ["hey jarvis"], (rate, dtype, chunk)
        assert abs(got[0][1] - ref[0][1]) <= 200, (rate, got, ref)  # one or two feature frames (80 ms)


def test_other_speech_and_silence_do_not_fire(kws: KeywordSpotter, say: Callable[..., np.ndarray]) -> None:
    kws.add_keyword("hey jarvis")
    assert _feed(kws, say("the weather is nice today"), SR, 1600) == []
    assert _feed(kws, np.zeros(3 * SR, np.float32), SR, 1600) == []


def test_detect_file_and_bad_files(tmp_path: Path, wav_of: Callable[..., Path]) -> None:
    kws = KeywordSpotter()
    kws.add_keyword("hey jarvis")
    assert [d.text for d in kws.detect_file(wav_of("hey jarvis", rate=22_050))] == ["hey jarvis"]
    txt = tmp_path / "notaudio.txt"
    txt.write_text("hello")
    with pytest.raises(AudioError) as e:
        kws.detect_file(txt)
    assert e.value.code == "unsupported_format" and "WAV, FLAC or OGG (Vorbis or Opus)" in e.value.message
    assert "BytesIO" not in e.value.message and "notaudio.txt" in e.value.message
    with pytest.raises(AudioError, match="No such file"):
        kws.detect_file(tmp_path / "missing.wav")


def test_keywords_rethreshold_remove_and_overrides(say: Callable[..., np.ndarray]) -> None:
    kws = KeywordSpotter()
    a = kws.add_keyword("hey jarvis", 0.6)
    again = kws.add_keyword("Hey, Jarvis!", 0.99)  # same normalized text: same id, new threshold
    assert again.id == a.id and again.threshold == 0.99 and len(kws.keywords) == 1
    assert _feed(kws, say("hey jarvis"), SR, 4000) == []  # nothing reaches 0.99
    x = kws.add_keyword("xkcd")
    assert x.guessed == ("xkcd",)
    y = kws.add_keyword("xkcd", phonemes="EH K S | K EY | S IY | D IY")
    assert y.id == x.id and y.phonemes[:4] == ("EH", "K", "S", "|") and y.guessed == ()
    with pytest.raises(G2PError, match="not in the model's inventory"):
        kws.add_keyword("xkcd", phonemes="EH QQ")
    with pytest.raises(ValueError, match="threshold"):
        kws.add_keyword("stop", 1.5)
    with pytest.raises(ValueError, match="proxy"):
        kws.add_keyword("stop", proxy="audio")  # type: ignore[arg-type]
    kws.remove_keyword(a.id)
    with pytest.raises(KeyError):
        kws.remove_keyword(a.id)
    assert [k.text for k in kws.keywords] == ["xkcd"]


def test_bad_audio_input_is_named(kws: KeywordSpotter) -> None:
    s = kws.create_stream(sample_rate=16_000)
    with pytest.raises(AudioError, match="int16 or float32"):
        s.accept_waveform(np.zeros(10, np.int32))
    with pytest.raises(AudioError, match="NaN"):
        s.accept_waveform(np.array([np.nan], np.float32))
    with pytest.raises(AudioError, match="channel"):
        s.accept_waveform(np.zeros((10, 2), np.float32))
    with pytest.raises(AudioError, match="sample_rate 4000"):
        kws.create_stream(sample_rate=4000)
    s.input_finished()
    with pytest.raises(AudioError, match="after input_finished"):
        s.accept_waveform(np.zeros(10, np.float32))


def test_vad_stream_still_detects_a_keyword_after_silence(wav_of: Callable[..., Path]) -> None:
    """The gated stream skips the silence but keeps the feature context, so the keyword right at
    speech onset is still found, at the same stream time as without the gate."""
    kws = KeywordSpotter()
    kws.add_keyword("hey jarvis")
    decoded = read_audio_file(wav_of("hey jarvis", rate=16_000))
    audio = np.concatenate([np.zeros((48_000, 1), np.float32), decoded.samples])  # 3 s of silence first
    found = {}
    for vad in (False, True):
        stream = kws.create_stream(16_000, vad=vad)
        stream.accept_waveform(audio)
        stream.input_finished()
        found[vad] = stream.detections()
    assert [d.text for d in found[True]] == [d.text for d in found[False]] == ["hey jarvis"]
    plain, gated = found[False][0], found[True][0]
    # The same detection: decided within two 80 ms frames, its score within 0.03. The window may be
    # another one (the robust model scores neighbouring windows almost alike, and the gate's
    # pre-roll shifts the features a little), but it still holds the keyword, after the 3 s of silence.
    assert abs(gated.decided_ms - plain.decided_ms) <= 160, found
    assert abs(gated.score - plain.score) <= 0.03, found
    keyword_end_ms = 1000 * len(audio) / 16_000
    assert gated.start_ms < keyword_end_ms and gated.end_ms > 3000, gated
