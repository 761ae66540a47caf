"""A new user's first test (issue 23): a keyword at the very start of the audio, the library's
thresholds from the calibration bank, the expected hit rate at enrollment, and detection spans."""

from __future__ import annotations

import numpy as np
import pytest

from openkws import KeywordSpotter
from openkws.engine.calibration import DEFAULT_TARGET_FA_PER_HOUR
from openkws.engine.events import FrameScores
from openkws.engine.spotter import DetectorConfig
from openkws.engine.windows import speech_span
from openkws.keywords.sensitivity import NoCalibrationBank, Sensitivity

SR = 16_000
HOP = 1280  # the packaged front-end's feature hop (80 ms)


@pytest.fixture(scope="module")
def tts():  # type: ignore[no-untyped-def]
    import shutil

    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are needed (make setup installs them)")
    from openkws.text.tts import ProxyTTS

    return ProxyTTS()


def _onset(wave: np.ndarray) -> np.ndarray:
    """The rendition from its first speech frame: the keyword starts at sample 0."""
    return wave[speech_span(wave)[0] :]


def _best(kws: KeywordSpotter, keyword_id: int, audio: np.ndarray) -> float:
    proxy = kws.spotter.index.tenant(kws.tenant).by_id[keyword_id].proxy
    best = [-1.0]

    def hook(f: FrameScores) -> None:
        if len(f.embeddings):
            best[0] = max(best[0], float((f.embeddings @ proxy).max()))

    s = kws.spotter.create_stream(tenant=kws.tenant, score_hook=hook)
    s.accept_waveform(SR, audio)
    s.input_finished()
    kws.spotter.decode(s)
    return best[0]


def _after(silence_ms: int, wave: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [np.zeros(silence_ms * SR // 1000, np.float32), wave, np.zeros(SR // 2, np.float32)]
    )


@pytest.mark.parametrize("text", ["hey jarvis", "computer"])
def test_a_keyword_at_sample_zero_scores_as_after_silence(tts, text: str) -> None:  # type: ignore[no-untyped-def]
    wave = _onset(tts.synthesize(text, "espeak:en-us"))
    kws = KeywordSpotter()
    kid = kws.add_keyword(text, threshold=0.5, hit_rate=False).id
    at0, at500 = _best(kws, kid, _after(0, wave)), _best(kws, kid, _after(500, wave))
    assert abs(at0 - at500) <= 0.03, (at0, at500)
    # six feature hops later the detector sees the same windows: equal up to float rounding
    assert _best(kws, kid, _after(6 * HOP * 1000 // SR, wave)) == pytest.approx(at0, abs=1e-4)
    # without the pre-roll (what the engine did before) the keyword at sample 0 scores far lower
    bare = KeywordSpotter(config=DetectorConfig(preroll_ms=0), spotter=None)
    bid = bare.add_keyword(text, threshold=0.5, hit_rate=False).id
    assert _best(bare, bid, _after(0, wave)) < at500 - 0.1


def test_a_detection_at_sample_zero_reports_times_from_the_first_real_sample(tts) -> None:  # type: ignore[no-untyped-def]
    wave = _onset(tts.synthesize("hey jarvis", "espeak:en-us"))
    kws = KeywordSpotter()
    kws.add_keyword("hey jarvis", threshold=0.5, hit_rate=False)
    s = kws.create_stream()
    s.accept_waveform(_after(0, wave))
    s.input_finished()
    (d,) = s.detections()
    end_ms = 1000 * speech_span(wave)[1] / SR  # the rendition ends with the engine's own silence
    assert d.start_ms <= 150 and abs(d.end_ms - end_ms) <= 150, (d, end_ms)
    assert d.start_ms >= 0 and d.decided_ms <= 1000 * (len(wave) + SR // 2) / SR


@pytest.mark.parametrize("noise_db", [None, -30.0])
def test_start_and_end_ms_bound_the_spoken_keyword(tts, noise_db: float | None) -> None:  # type: ignore[no-untyped-def]
    """espeak-ng clips placed at known offsets in silence or pink noise: start_ms/end_ms within 150 ms."""
    from openkws.engine.hit_rate import pink_noise

    kws = KeywordSpotter()
    texts = ("hey jarvis", "turn on the lights", "play music")
    for t in texts:
        kws.add_keyword(t, threshold=0.5, hit_rate=False)
    rng = np.random.default_rng(3)
    for k, text in enumerate(texts):
        wave = tts.synthesize(text, ("espeak:en-us", "espeak:en-gb", "espeak:en-us+f2")[k])
        a, b = speech_span(wave)
        offset = int((1.3 + 0.37 * k) * SR)
        audio = np.zeros(offset + len(wave) + SR, np.float32)
        audio[offset : offset + len(wave)] += wave
        if noise_db is not None:
            audio += pink_noise(len(audio), rng) * 0.1 * 10 ** (noise_db / 20)
        s = kws.create_stream()
        s.accept_waveform(audio)
        s.input_finished()
        found = [d for d in s.detections() if d.text == text]
        assert len(found) == 1, (text, found)
        truth = (1000 * (offset + a) / SR, 1000 * (offset + b) / SR)
        assert abs(found[0].start_ms - truth[0]) <= 150, (text, noise_db, found[0], truth)
        assert abs(found[0].end_ms - truth[1]) <= 150, (text, noise_db, found[0], truth)


def test_add_keyword_sets_thresholds_from_the_calibration_bank(tts) -> None:  # type: ignore[no-untyped-def]
    kws = KeywordSpotter()
    sens = kws.sensitivity
    assert sens.available, "the packaged model ships a calibration bank"
    kw = kws.add_keyword("hey jarvis", hit_rate=False)
    proxy = kws.spotter.index.tenant(kws.tenant).by_id[kw.id].proxy
    assert kw.threshold == sens.threshold(proxy, DEFAULT_TARGET_FA_PER_HOUR) != kws.spotter.default_threshold
    assert kw.expected_fa_per_hour == pytest.approx(DEFAULT_TARGET_FA_PER_HOUR, rel=0.05)
    loose = kws.add_keyword("hey jarvis", sensitivity=5.0, hit_rate=False)
    assert loose.id == kw.id and loose.threshold < kw.threshold and loose.expected_fa_per_hour > 1.0
    raw = kws.add_keyword("hey jarvis", 0.42, hit_rate=False)  # a raw threshold overrides
    assert raw.threshold == 0.42 and raw.expected_fa_per_hour is not None and raw.expected_fa_per_hour > 5
    fixed = KeywordSpotter(threshold=0.6, spotter=kws.spotter, sensitivity=sens)
    assert fixed.add_keyword("computer", hit_rate=False).threshold == 0.6  # one raw default for all
    assert fixed.add_keyword("computer", sensitivity=1.0, hit_rate=False).threshold != 0.6


def test_bad_sensitivity_and_no_bank_are_named() -> None:
    kws = KeywordSpotter()
    for bad in (0.0, -1.0, 4000.0):
        with pytest.raises(ValueError, match="false alarms per hour"):
            kws.add_keyword("hey jarvis", sensitivity=bad, hit_rate=False)
    with pytest.raises(ValueError, match=r"threshold 1.5 out of range"):
        kws.add_keyword("hey jarvis", 1.5, hit_rate=False)
    no_bank = KeywordSpotter(spotter=kws.spotter, sensitivity=Sensitivity(None, 0.65))
    with pytest.raises(NoCalibrationBank, match="no calibration bank"):
        no_bank.add_keyword("hey jarvis", sensitivity=1.0, hit_rate=False)
    kw = no_bank.add_keyword("hey jarvis", hit_rate=False)
    assert kw.threshold == 0.65 and kw.expected_fa_per_hour is None


def test_expected_hit_rate_and_its_warning(tts) -> None:  # type: ignore[no-untyped-def]
    kws = KeywordSpotter()
    easy = kws.add_keyword("hey jarvis")
    assert easy.expected_hit_rate is not None and easy.expected_hit_rate >= 0.5, easy
    assert not any("hit rate" in w for w in easy.warnings)
    hard = kws.add_keyword("hey jarvis", 0.99)  # a threshold no rendition reaches
    assert hard.expected_hit_rate == 0.0
    (note,) = [w for w in hard.warnings if "hit rate" in w]
    assert "TTS estimate" in note and "longer phrase" in note and "proxy 'tts'" in note
    assert kws.add_keyword("hey jarvis", hit_rate=False).expected_hit_rate is None
