"""``openkws listen``: the microphone, spotted in this process, with a live level meter.

Like openWakeWord's microphone example: one line redrawn ten times a second with the input level,
and a line per detection. The microphone needs the ``mic`` extra (``sounddevice`` and PortAudio);
without it, or without an input device, :class:`ListenError` says what to install or plug in.

Example (the meter for a quiet and a loud 100 ms block):
    >>> level_meter(np.full(1600, 100, np.int16)), level_meter(np.full(1600, 16000, np.int16))
    ('[####..................]  -50 dBFS', '[####################..]   -6 dBFS')
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from openkws.kws import Detection, KeywordSpotter, Stream

METER_WIDTH = 22
FLOOR_DB = -60.0
BLOCK_S = 0.1


class ListenError(RuntimeError):
    """No way to listen: the extra is missing, PortAudio is missing, or there is no input device."""


def level_db(block: np.ndarray) -> float:
    """RMS level of int16 (or float in [-1, 1]) audio in dBFS, floored at -60."""
    x = block.astype(np.float32) / (32768.0 if block.dtype == np.int16 else 1.0)
    rms = float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    return max(FLOOR_DB, 20.0 * float(np.log10(max(rms, 1e-9))))


def level_meter(block: np.ndarray) -> str:
    db = level_db(block)
    filled = round(METER_WIDTH * (db - FLOOR_DB) / -FLOOR_DB)
    return f"[{'#' * filled}{'.' * (METER_WIDTH - filled)}] {db:4.0f} dBFS"


def run(stream: Stream, blocks: Iterable[np.ndarray], write: Callable[[str], None]) -> list[Detection]:
    """Feed ``blocks`` (int16 mono) to ``stream``; redraw the meter per block and print detections."""
    found: list[Detection] = []
    last: Detection | None = None
    for block in blocks:
        stream.accept_waveform(block)
        for d in stream.detections():
            found.append(d)
            last = d
            write(
                f"\r{' ' * (METER_WIDTH + 40)}\r[{d.decided_ms / 1000:7.2f}s] detected {d.text!r} "
                f"(score {d.score:.3f} >= {d.threshold:.2f})\n"
            )
        tail = f"  last: {last.text!r} at {last.decided_ms / 1000:.1f}s" if last else ""
        write(f"\r{level_meter(block)}{tail}   ")
    return found


def _sounddevice() -> Any:
    try:
        import sounddevice as sd
    except ImportError:
        raise ListenError(
            "openkws listen needs the microphone extra: pip install 'openkws[mic]' (and PortAudio, "
            "e.g. apt-get install libportaudio2)"
        ) from None
    except OSError as e:
        raise ListenError(
            f"the sounddevice package cannot load PortAudio ({e}); install it, e.g. apt-get install "
            "libportaudio2 (macOS: brew install portaudio)"
        ) from None
    return sd


def microphone(device: str | int | None, seconds: float | None) -> tuple[int, Iterator[np.ndarray]]:
    """(sample rate, blocks of int16 mono audio) from an input device; raises :class:`ListenError`."""
    sd = _sounddevice()
    dev: str | int | None = int(device) if isinstance(device, str) and device.isdigit() else device
    try:
        info = sd.query_devices(dev, kind="input")
    except (sd.PortAudioError, ValueError) as e:
        raise ListenError(
            f"no audio input device{'' if dev is None else f' {dev!r}'} ({e}); plug in a microphone, "
            "list devices with `python -m sounddevice`, or spot keywords in a file with "
            "`openkws detect FILE`"
        ) from None
    rate = int(info["default_samplerate"])
    blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=100)

    def gen() -> Iterator[np.ndarray]:
        end = None if seconds is None else time.monotonic() + seconds
        try:
            with sd.InputStream(
                samplerate=rate,
                channels=1,
                dtype="int16",
                blocksize=int(rate * BLOCK_S),
                device=dev,
                callback=lambda data, n, t, status: blocks.put(data[:, 0].copy()),
            ):
                while end is None or time.monotonic() < end:
                    yield blocks.get(timeout=5)
        except sd.PortAudioError as e:
            raise ListenError(
                f"the input device failed ({e}); check it with `python -m sounddevice`"
            ) from None
        except queue.Empty:
            raise ListenError(
                "the input device delivered no audio for 5 s; check it with `python -m sounddevice`"
            ) from None

    return rate, gen()


def listen(
    keywords: list[str],
    threshold: float | None = None,
    device: str | None = None,
    seconds: float | None = None,
    model_dir: Path | None = None,
) -> list[Detection]:
    """Spot ``keywords`` in the microphone until Ctrl-C (or ``seconds``)."""
    rate, blocks = microphone(device, seconds)  # fail before loading the model
    kws = KeywordSpotter(model_dir, threshold=threshold)
    for text in keywords:
        kw = kws.add_keyword(text)
        guessed = f" (pronunciation guessed for {', '.join(kw.guessed)})" if kw.guessed else ""
        sys.stderr.write(
            f"listening for {kw.text!r} [{' '.join(kw.phonemes)}] threshold {kw.threshold:.2f}{guessed}\n"
        )
    sys.stderr.write(f"microphone at {rate} Hz; Ctrl-C stops\n")

    def write(s: str) -> None:
        sys.stdout.write(s)
        sys.stdout.flush()

    try:
        return run(kws.create_stream(sample_rate=rate), blocks, write)
    except KeyboardInterrupt:
        return []
    finally:
        write("\n")
