"""`openkws.text.tts.to_16k`, the one whole-clip resampler, gives the samples a stream's resampler gives
(evaluation scores what the service hears); TTS peak normalisation refuses silence."""

from __future__ import annotations

import numpy as np
import pytest

from openkws.constants import SAMPLE_RATE
from openkws.engine.stream_input import StreamInput
from openkws.text.tts import PEAK, TTSError, peak_normalize, to_16k


def _through_stream(samples: np.ndarray, rate: int) -> np.ndarray:
    q = StreamInput()
    q.accept(rate, samples)
    q.finish()
    return q.take(len(samples) * SAMPLE_RATE // rate + SAMPLE_RATE)[0]


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_to_16k_matches_the_stream_resampler(rate: int) -> None:
    x = np.random.default_rng(rate).standard_normal(rate * 2).astype(np.float32) * 0.1
    got = to_16k(x, rate)
    assert got.dtype == np.float32 and len(got) == 2 * SAMPLE_RATE
    np.testing.assert_allclose(got, _through_stream(x, rate), atol=1e-6)


def test_to_16k_keeps_16k_audio() -> None:
    x = np.linspace(-1, 1, 100, dtype=np.float64)
    got = to_16k(x, SAMPLE_RATE)
    assert got.dtype == np.float32 and np.array_equal(got, x.astype(np.float32))


def test_peak_normalize() -> None:
    assert float(np.max(np.abs(peak_normalize(np.array([0.1, -0.2], np.float32))))) == pytest.approx(PEAK)
    with pytest.raises(TTSError, match="silence"):
        peak_normalize(np.zeros(160, np.float32))
