"""openkws: open-vocabulary keyword spotting. Type a keyword, detect it in live audio.

In-process use (no server, no database)::

    from openkws import KeywordSpotter
    kws = KeywordSpotter()                       # the packaged default model
    kws.add_keyword("hey jarvis")
    stream = kws.create_stream(sample_rate=44_100)
    stream.accept_waveform(chunk)                # numpy int16 or float32, any chunk size
    for d in stream.detections(): print(d.text, d.score, d.start_ms)
    stream.input_finished()                      # end of audio: flush a keyword at the very end

The runtime (engine, REST/websocket API, Wyoming server, CLI) never imports torch. The public names
are loaded on first use, so ``import openkws`` stays cheap for the CLI and for ``openkws.training``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AudioError", "Detection", "G2PError", "Keyword", "KeywordSpotter", "KeywordTrace", "ScoreTrace",
           "Stream", "__version__"]  # fmt: skip

if TYPE_CHECKING:
    from openkws.audio import AudioError
    from openkws.kws import Detection, Keyword, KeywordSpotter, KeywordTrace, ScoreTrace, Stream
    from openkws.text import G2PError

_LAZY = {
    "KeywordSpotter": ".kws",
    "Stream": ".kws",
    "Keyword": ".kws",
    "Detection": ".kws",
    "ScoreTrace": ".kws",
    "KeywordTrace": ".kws",
    "AudioError": ".audio",
    "G2PError": ".text",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'openkws' has no attribute {name!r}")
