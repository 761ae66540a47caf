"""openkws runtime: engine (numpy/onnxruntime/faiss), REST/websocket API, CLI. Never imports torch."""

__version__ = "0.1.0"
