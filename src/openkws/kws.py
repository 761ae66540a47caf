"""In-process keyword spotting, in sherpa-onnx's shape: no server, no database.

One :class:`KeywordSpotter` holds the model and the keywords; each audio source gets a
:class:`Stream` from :meth:`KeywordSpotter.create_stream`. Streams take int16 or float32 numpy
audio at any sample rate from 8 to 48 kHz, in chunks of any size, and report detections as
they are decided. The wrapper is thin: it is the engine's :class:`~openkws.engine.spotter.Spotter` plus keyword
bookkeeping and sample-rate conversion; the Wyoming server (:mod:`openkws.wyoming`) and
``openkws listen`` use it too.

Example (the packaged model; the audio is espeak-ng speech at 22.05 kHz, fed in 1000-sample chunks):
    >>> from openkws.text.tts import ProxyTTS
    >>> kws = KeywordSpotter()
    >>> kw = kws.add_keyword("hey jarvis")
    >>> kw.text, kw.phonemes, kw.guessed
    ('hey jarvis', ('HH', 'EY', '|', 'JH', 'AA', 'R', 'V', 'AH', 'S'), ())
    >>> speech = ProxyTTS().synthesize("hey jarvis", "espeak:en-us+m3")
    >>> audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    >>> audio = soxr.resample(audio, 16_000, 22_050)
    >>> stream = kws.create_stream(sample_rate=22_050)
    >>> found = []
    >>> for i in range(0, len(audio), 1000):
    ...     stream.accept_waveform((audio[i:i + 1000] * 32767).astype(np.int16))
    ...     found += stream.detections()
    >>> stream.input_finished(); found += stream.detections()
    >>> [(d.text, d.score >= d.threshold, abs(d.start_ms - 500) < 150) for d in found]  # speech starts at 500 ms
    [('hey jarvis', True, True)]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
import soxr  # noqa: F401  (used by the doctest; a runtime dependency anyway)

from openkws.audio import AudioError, check_channels, check_rate
from openkws.audiofile import read_audio_file
from openkws.engine.acoustic_proxy import PROXY_MODES, ProxyMode, combine_proxies
from openkws.engine.decision import Competition
from openkws.engine.events import Detection
from openkws.engine.runtime import Device
from openkws.engine.score_trace import KeywordTrace, ScoreTrace, TraceRecorder
from openkws.engine.spotter import DEFAULT_TENANT, DetectorConfig, Enrollment, Spotter
from openkws.engine.vad import VadConfig
from openkws.keywords.sensitivity import MAX_FA_PER_HOUR, Sensitivity, estimate_hit_rates
from openkws.settings import packaged_model_dir
from openkws.text.pronunciation import guessed_words, override
from openkws.text.tts import ProxyTTS

__all__ = ["Detection", "Keyword", "KeywordSpotter", "KeywordTrace", "ScoreTrace", "Stream"]


@dataclass(frozen=True)
class Keyword:
    """An enrolled keyword. ``guessed``: words not in the pronouncing dictionary, whose phonemes
    the neural G2P guessed (check them, or pass ``phonemes=`` to :meth:`KeywordSpotter.add_keyword`).

    ``expected_fa_per_hour``: false alarms per hour expected at ``threshold`` on background speech
    (the model's calibration bank; None without one). ``expected_hit_rate``: the share of TTS
    renditions of the keyword (held-in voices, speed and noise variants) that reach ``threshold``, a
    TTS estimate (None when not estimated). ``warnings``: enrollment advice, as the server gives it.
    """

    id: int
    text: str
    phonemes: tuple[str, ...]
    threshold: float
    proxy: ProxyMode = "text"
    guessed: tuple[str, ...] = ()
    expected_fa_per_hour: float | None = None
    expected_hit_rate: float | None = None
    warnings: tuple[str, ...] = ()


class Stream:
    """One audio source. Not shared between threads; create one per microphone, file or call."""

    def __init__(
        self,
        kws: KeywordSpotter,
        sample_rate: int,
        channels: int,
        vad: VadConfig | None = None,
        competition: Competition = "best",
        trace: bool = False,
    ) -> None:
        check_rate(sample_rate)
        check_channels(channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self._kws = kws
        rec = TraceRecorder(kws.spotter.index, kws.tenant) if trace else None
        self._inner = kws.spotter.create_stream(
            tenant=kws.tenant, vad=vad, competition=competition, debug=trace, score_hook=rec
        )
        self._recorder = rec
        if rec is not None:
            rec.attach(self._inner)
        self._flushed = False

    def accept_waveform(self, samples: np.ndarray) -> None:
        """Queue audio: int16 (full scale 32768) or float (in [-1, 1]), shape [n] or [n, channels]."""
        if self._flushed:
            raise AudioError("stream_finished", "audio after input_finished(); create a new stream")
        x = np.asarray(samples)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        elif x.dtype.kind == "f":
            if not np.isfinite(x).all():
                raise AudioError(
                    "invalid_samples", "audio contains NaN or infinity; send finite samples in [-1, 1]"
                )
            x = np.clip(x, -1.0, 1.0).astype(np.float32)
        else:
            raise AudioError(
                "unsupported_dtype", f"audio of dtype {x.dtype} not supported; use int16 or float32"
            )
        if x.ndim == 1 and self.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise AudioError(
                "unsupported_shape",
                f"audio of shape {x.shape} does not match {self.channels} "
                "channel(s); give [n] (mono) or [n, channels]",
            )
        self._inner.accept_waveform(self.sample_rate, x)  # the engine's stream resamples and downmixes

    def input_finished(self) -> None:
        """No more audio: the next :meth:`detections` flushes the tail (a keyword at the very end)."""
        if not self._flushed:
            self._flushed = True
            self._inner.input_finished()

    def detections(self) -> list[Detection]:
        """Run the model on the audio queued so far; the detections decided since the last call."""
        if not self._inner.ready():
            return []
        res = self._kws.spotter.decode(self._inner)
        if self._recorder is not None:
            self._recorder.record(res.detections, res.near_misses)
        return res.detections

    @property
    def seconds(self) -> float:
        """Audio accepted so far, in seconds."""
        return self._inner.received_seconds

    # -- diagnostics (issue 23) -------------------------------------------------------------------------
    def trace(self) -> ScoreTrace:
        """Every keyword's score over the audio decoded so far, its threshold, the detections and the
        near misses (see :class:`~openkws.engine.score_trace.ScoreTrace`). Needs
        ``create_stream(trace=True)``; audio still queued is not in it until :meth:`detections` runs."""
        if self._recorder is None:
            raise ValueError("this stream records no trace; create it with create_stream(trace=True)")
        return self._recorder.trace()


class KeywordSpotter:
    """The model and a set of keywords; thread-safe. ``KeywordSpotter()`` loads the packaged model.

    ``spotter`` wraps an already loaded engine instead (the servers share theirs); ``tenant`` picks
    whose keywords of that engine's index the streams see.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        threshold: float | None = None,
        device: Device = "cpu",
        threads: int = 1,
        config: DetectorConfig | None = None,
        spotter: Spotter | None = None,
        tenant: str = DEFAULT_TENANT,
        sensitivity: Sensitivity | None = None,
        tts: ProxyTTS | None = None,
    ) -> None:
        """``threshold``: one raw threshold for every keyword (as the server's ``default_threshold``);
        by default each keyword's threshold meets the default false-alarm target from the model's
        calibration bank, as the server does. ``sensitivity`` defaults to the bank of ``model_dir``
        (the packaged model's), or none for a given ``spotter`` without ``model_dir``."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} out of range; use a cosine threshold in [0, 1]")
        if spotter is None:
            model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
            spotter = Spotter.load(model_dir, config, device=device, threads=threads)
        self.spotter = spotter
        self.tenant = tenant
        if sensitivity is None:
            sensitivity = (
                Sensitivity.load(Path(model_dir), spotter)
                if model_dir is not None
                else Sensitivity(None, spotter.default_threshold)
            )
        self.sensitivity = sensitivity
        self.tts = tts or ProxyTTS()
        self.explicit_threshold = threshold
        self.default_threshold = spotter.default_threshold if threshold is None else threshold
        self._keywords: dict[int, Keyword] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    @property
    def keywords(self) -> list[Keyword]:
        return list(self._keywords.values())

    def add_keyword(
        self,
        text: str,
        threshold: float | None = None,
        *,
        sensitivity: float | None = None,
        phonemes: str | Sequence[str] | None = None,
        proxy: ProxyMode = "text",
        hit_rate: bool = True,
    ) -> Keyword:
        """Enroll ``text`` (re-adding a text replaces its threshold, phonemes and proxy, same id).

        ``sensitivity``: the false alarms per hour to expect on background speech; the threshold is
        set from the model's calibration bank (default: the server's, 0.5). A raw ``threshold``
        overrides it. ``phonemes`` overrides the G2P (ARPAbet, ``|`` between words); ``proxy``
        ``tts``/``both`` also uses espeak-ng/flite renditions (~0.5 s). ``hit_rate``: estimate
        ``expected_hit_rate`` from those renditions (synthesized for it with ``proxy="text"``; skipped
        with a warning when espeak-ng or flite is missing). Raises ``G2PError`` for unusable text or
        phonemes, ``ValueError`` for a bad threshold, sensitivity or proxy, ``NoCalibrationBank`` for
        a sensitivity without a bank, ``TTSUnavailable`` for ``tts``/``both`` without espeak-ng.
        """
        if proxy not in PROXY_MODES:
            raise ValueError(f"proxy {proxy!r} not supported; use one of {', '.join(PROXY_MODES)}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} out of range; use a cosine threshold in [0, 1]")
        if sensitivity is not None and not 0.0 < sensitivity <= MAX_FA_PER_HOUR:
            raise ValueError(
                f"sensitivity {sensitivity} out of range; give false alarms per hour in (0, {MAX_FA_PER_HOUR:g}]"
            )
        sp = self.spotter
        pron = sp.pronounce(text)
        guessed = () if phonemes is not None else guessed_words(sp.g2p, pron)
        if phonemes is not None:
            pron = override(pron, phonemes, sp.g2p.inventory)
        inv = sp.g2p.inventory
        vector = sp.embed_phoneme_ids([inv.encode(list(pron.phonemes))])[0]
        waves: list[np.ndarray] | None = None  # the proxy's renditions, reused for the hit rate
        if proxy != "text":
            waves = self.tts.renditions(pron.text)
            vector = combine_proxies(vector, sp.acoustic_proxy(waves, proxy), proxy)
        thr = self.sensitivity.choose(vector, threshold, sensitivity, self.explicit_threshold, pron.phonemes)
        ((rate, notes),) = (
            estimate_hit_rates(
                sp,
                self.tts,
                [pron.text],
                [vector],
                [thr],
                [proxy],
                {} if waves is None else {pron.text: waves},
            )
            if hit_rate
            else [(None, [])]
        )
        expected = self.sensitivity.expected_fa_per_hour(vector, thr, pron.phonemes)
        warnings = self.sensitivity.warnings(pron.phonemes, expected) + notes
        with self._lock:
            same = [k for k in self._keywords.values() if k.text == pron.text]
            kid = same[0].id if same else self._next_id
            sp.enroll([Enrollment(kid, self.tenant, pron.text, pron.phonemes, thr, proxy, proxy=vector)])
            kw = Keyword(kid, pron.text, pron.phonemes, thr, proxy, guessed, expected, rate, tuple(warnings))
            self._keywords[kid] = kw
            self._next_id = max(self._next_id, kid + 1)
            return kw

    def remove_keyword(self, keyword_id: int) -> None:
        with self._lock:
            if self._keywords.pop(keyword_id, None) is None:
                raise KeyError(f"no keyword with id {keyword_id}")
            self.spotter.index.remove(self.tenant, [keyword_id])

    def create_stream(
        self,
        sample_rate: int = 16_000,
        channels: int = 1,
        *,
        vad: bool = False,
        competition: Competition = "best",
        trace: bool = False,
    ) -> Stream:
        """A new stream for one audio source (8–48 kHz, 1–8 channels; resampled to the model's 16 kHz).
        ``vad``: skip the model on non-speech (WebRTC VAD, keeps 1.2 s before each onset);
        ``competition``: ``best`` reports only the best of keywords firing on the same audio;
        ``trace``: record every keyword's scores for :meth:`Stream.trace` (costs one small matrix
        product per 80 ms frame)."""
        return Stream(self, sample_rate, channels, VadConfig() if vad else None, competition, trace)

    def decode_stream(self, stream: Stream) -> list[Detection]:
        """sherpa-onnx spelling of ``stream.detections()``."""
        return stream.detections()

    @overload
    def detect_file(self, path: Path | str, *, trace: Literal[False] = False) -> list[Detection]: ...
    @overload
    def detect_file(self, path: Path | str, *, trace: Literal[True]) -> ScoreTrace: ...

    def detect_file(self, path: Path | str, *, trace: bool = False) -> list[Detection] | ScoreTrace:
        """Every detection in a WAV, FLAC or OGG (Vorbis or Opus) file; raises ``AudioError`` (formats by name).

        ``trace=True`` returns a :class:`~openkws.engine.score_trace.ScoreTrace` instead: every
        keyword's score over time with its threshold, the detections (``.detections``) and the near
        misses; ``openkws.plot.plot_trace(trace, "out.png")`` draws it."""
        decoded = read_audio_file(path)
        stream = self.create_stream(decoded.sample_rate, decoded.samples.shape[1], trace=trace)
        stream.accept_waveform(decoded.samples)
        stream.input_finished()
        found = stream.detections()
        return stream.trace() if trace else found
