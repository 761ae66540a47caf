"""In-process keyword spotting, in sherpa-onnx's shape: no server, no database.

One :class:`KeywordSpotter` holds the model and the keywords; each audio source gets a
:class:`Stream` from :meth:`KeywordSpotter.create_stream`. Streams take int16 or float32 numpy
audio at any sample rate, in chunks of any size, and report detections as they are decided.
The wrapper is thin: it is the engine's :class:`~openkws.engine.spotter.Spotter` plus keyword
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
    >>> [(d.text, d.score >= d.threshold, d.start_ms <= 500 < d.end_ms) for d in found]  # speech starts at 500 ms
    [('hey jarvis', True, True)]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr  # noqa: F401  (used by the doctest; a runtime dependency anyway)

from openkws.audio import AudioError, check_channels, check_rate
from openkws.audiofile import read_audio_file
from openkws.engine.acoustic_proxy import PROXY_MODES, ProxyMode, combine_proxies
from openkws.engine.decision import Competition
from openkws.engine.index import KeywordEntry
from openkws.engine.runtime import Device
from openkws.engine.spotter import DEFAULT_TENANT, DetectorConfig, Spotter
from openkws.engine.spotter import Detection as Detection
from openkws.engine.vad import VadConfig
from openkws.settings import packaged_model_dir
from openkws.text.pronunciation import guessed_words, override
from openkws.text.tts import ProxyTTS

__all__ = ["Detection", "Keyword", "KeywordSpotter", "Stream"]


@dataclass(frozen=True)
class Keyword:
    """An enrolled keyword. ``guessed``: words not in the pronouncing dictionary, whose phonemes
    the neural G2P guessed (check them, or pass ``phonemes=`` to :meth:`KeywordSpotter.add_keyword`)."""

    id: int
    text: str
    phonemes: tuple[str, ...]
    threshold: float
    proxy: ProxyMode = "text"
    guessed: tuple[str, ...] = ()


class Stream:
    """One audio source. Not shared between threads; create one per microphone, file or call."""

    def __init__(
        self,
        kws: KeywordSpotter,
        sample_rate: int,
        channels: int,
        vad: VadConfig | None = None,
        competition: Competition = "best",
    ) -> None:
        check_rate(sample_rate)
        check_channels(channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self._kws = kws
        self._inner = kws.spotter.create_stream(tenant=kws.tenant, vad=vad, competition=competition)
        self._samples_in = 0
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
        self._samples_in += x.shape[0]
        self._inner.accept_waveform(self.sample_rate, x)  # the engine's stream resamples and downmixes

    def input_finished(self) -> None:
        """No more audio: the next :meth:`detections` flushes the tail (a keyword at the very end)."""
        if not self._flushed:
            self._flushed = True
            self._inner.input_finished()

    def detections(self) -> list[Detection]:
        """Run the model on the audio queued so far; the detections decided since the last call."""
        return self._inner.decode().detections if self._inner.ready() else []

    @property
    def seconds(self) -> float:
        """Audio accepted so far, in seconds."""
        return self._samples_in / self.sample_rate


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
    ) -> None:
        if spotter is None:
            spotter = Spotter.load(
                Path(model_dir) if model_dir is not None else packaged_model_dir(),
                config,
                device=device,
                threads=threads,
            )
        self.spotter = spotter
        self.tenant = tenant
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
        phonemes: str | Sequence[str] | None = None,
        proxy: ProxyMode = "text",
    ) -> Keyword:
        """Enroll ``text`` (re-adding a text replaces its threshold, phonemes and proxy, same id).

        ``phonemes`` overrides the G2P (ARPAbet, ``|`` between words); ``proxy`` ``tts``/``both``
        also uses espeak-ng/flite renditions (~0.5 s). Raises ``G2PError`` for unusable text or
        phonemes, ``ValueError`` for a bad threshold or proxy, ``TTSUnavailable`` without espeak-ng.
        """
        if proxy not in PROXY_MODES:
            raise ValueError(f"proxy {proxy!r} not supported; use one of {', '.join(PROXY_MODES)}")
        thr = self.default_threshold if threshold is None else float(threshold)
        if not 0.0 <= thr <= 1.0:
            raise ValueError(f"threshold {thr} out of range; use a cosine threshold in [0, 1]")
        sp = self.spotter
        pron = sp.pronounce(text)
        guessed = () if phonemes is not None else guessed_words(sp.g2p, pron)
        if phonemes is not None:
            pron = override(pron, phonemes, sp.g2p.inventory)
        with self._lock:
            same = [k for k in self._keywords.values() if k.text == pron.text]
            kid = same[0].id if same else self._next_id
            entry = sp.entries_from([(kid, self.tenant, pron.text, pron.phonemes, thr)])[0]
            if proxy != "text":
                acoustic = sp.acoustic_proxy(ProxyTTS().renditions(pron.text), proxy)
                entry = KeywordEntry(
                    kid,
                    self.tenant,
                    pron.text,
                    pron.phonemes,
                    thr,
                    combine_proxies(entry.proxy, acoustic, proxy),
                )
            sp.index.upsert([entry])
            kw = Keyword(kid, pron.text, pron.phonemes, thr, proxy, guessed)
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
    ) -> Stream:
        """A new stream for one audio source (8–48 kHz, 1–8 channels; resampled to the model's 16 kHz).
        ``vad``: skip the model on non-speech (WebRTC VAD, keeps 1.2 s before each onset);
        ``competition``: ``best`` reports only the best of keywords firing on the same audio."""
        return Stream(self, sample_rate, channels, VadConfig() if vad else None, competition)

    def decode_stream(self, stream: Stream) -> list[Detection]:
        """sherpa-onnx spelling of ``stream.detections()``."""
        return stream.detections()

    def detect_file(self, path: Path | str) -> list[Detection]:
        """Every detection in a WAV, FLAC or OGG (Vorbis or Opus) file; raises ``AudioError`` (formats by name)."""
        decoded = read_audio_file(path)
        stream = self.create_stream(decoded.sample_rate, decoded.samples.shape[1])
        stream.accept_waveform(decoded.samples)
        stream.input_finished()
        return stream.detections()
