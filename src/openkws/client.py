"""Python client for the openkws service: synchronous REST calls and a websocket streaming helper.

Example (against a running server)::

    from openkws.client import OpenKWSClient
    with OpenKWSClient("http://127.0.0.1:8000") as kws:
        kw = kws.add_keyword("hey jarvis")
        for event in kws.stream_file("clip.wav", realtime=True):
            if event["type"] == "detection":
                print(event["text"], event["score"])
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np

PROTOCOL_VERSION = 1


class OpenKWSError(RuntimeError):
    """A 4xx/5xx answer; ``code`` and ``message`` come from the server's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ServerUnreachable(OpenKWSError):
    """No answer from the server (not running, wrong host or port, bad URL); ``status`` is 0."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(0, code, message)


def check_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; raises :class:`ServerUnreachable` for a URL that
    cannot work (no ``http://``/``https://`` scheme, no host).

    >>> check_url("http://127.0.0.1:8000/")
    'http://127.0.0.1:8000'
    >>> try:
    ...     check_url("127.0.0.1:8200")
    ... except ServerUnreachable as e:
    ...     print(e.message)
    the URL '127.0.0.1:8200' has no scheme; use http://127.0.0.1:8200 (or https://...)
    """
    scheme, sep, rest = base_url.strip().partition("://")
    rest = rest.rstrip("/")
    if not sep:
        raise ServerUnreachable(
            "bad_url", f"the URL {base_url!r} has no scheme; use http://{scheme.rstrip('/')} (or https://...)"
        )
    if scheme.lower() not in ("http", "https"):
        raise ServerUnreachable(
            "bad_url", f"the URL {base_url!r} has scheme {scheme!r}; use http:// or https://"
        )
    if not rest or rest.startswith(("/", ":")):
        raise ServerUnreachable(
            "bad_url", f"the URL {base_url!r} has no host; use e.g. http://127.0.0.1:8000"
        )
    return f"{scheme}://{rest}"


class StreamClosed(RuntimeError):
    """The server closed the stream abnormally; ``code`` is the websocket close code."""

    def __init__(self, code: int, reason: str, error: dict[str, Any] | None) -> None:
        msg = error.get("message") if error else reason
        super().__init__(f"stream closed with code {code}: {msg}")
        self.code = code
        self.reason = reason
        self.error = error


class _Transport(httpx.HTTPTransport):
    """Turns connection failures into :class:`ServerUnreachable` with what to do about them."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.netloc.decode()}"
        try:
            return super().handle_request(request)
        except httpx.ConnectError as e:
            raise ServerUnreachable(
                "server_unreachable",
                f"cannot reach an openkws server at {base} ({_reason(e)}); "
                "start one with `openkws serve`, or pass --url / set OPENKWS_URL",
            ) from None
        except httpx.TimeoutException:
            raise ServerUnreachable(
                "server_timeout",
                f"the server at {base} did not answer in time; check that it "
                "is an openkws server and not overloaded (GET /readyz)",
            ) from None
        except httpx.TransportError as e:
            raise ServerUnreachable(
                "transport_error",
                f"talking to {base} failed ({_reason(e)}); "
                "check the URL and that an openkws server runs there",
            ) from None


def _reason(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.split("] ", 1)[-1]  # drop "[Errno 111] "


def _ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :]
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :]
    return base_url


class OpenKWSClient:
    """``api_key``: sent as ``Authorization: Bearer <key>`` on every request and stream (auth on)."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", timeout: float = 60.0, api_key: str | None = None
    ) -> None:
        self.base_url = check_url(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=self._headers, transport=_Transport()
        )

    def __enter__(self) -> OpenKWSClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _json(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise OpenKWSError(r.status_code, str(err.get("code")), str(err.get("message")))
            except (ValueError, KeyError, TypeError):
                raise OpenKWSError(r.status_code, "http_error", r.text[:500]) from None
        return None if r.status_code == 204 else r.json()

    # -- REST -----------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return dict(self._json(self._http.get("/readyz")))

    def add_keyword(
        self,
        text: str,
        threshold: float | None = None,
        metadata: dict[str, Any] | None = None,
        proxy: str | None = None,
        phonemes: list[str] | str | None = None,
        target_fa_per_hour: float | None = None,
    ) -> dict[str, Any]:
        """Enroll one keyword; ``proxy`` is ``text`` (server default), ``tts`` or ``both``;
        ``phonemes`` overrides the pronunciation (ARPAbet, ``|`` between words);
        ``target_fa_per_hour`` sets the threshold from the model's calibration bank."""
        body: dict[str, Any] = {"text": text}
        for k, v in (
            ("threshold", threshold),
            ("metadata", metadata),
            ("proxy", proxy),
            ("phonemes", phonemes),
            ("target_fa_per_hour", target_fa_per_hour),
        ):
            if v is not None:
                body[k] = v
        return dict(self._json(self._http.post("/v1/keywords", json=body)))

    def add_keyword_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Enroll a batch of ``POST /v1/keywords`` bodies at once (all or nothing)."""
        return list(self._json(self._http.post("/v1/keywords/batch", json={"keywords": items}))["keywords"])

    def add_keywords(
        self, texts: list[str], threshold: float | None = None, proxy: str | None = None
    ) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {
            k: v for k, v in (("threshold", threshold), ("proxy", proxy)) if v is not None
        }
        items = [{"text": t, **extra} for t in texts]
        return list(self._json(self._http.post("/v1/keywords/batch", json={"keywords": items}))["keywords"])

    def list_keywords(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Every enrolled keyword (follows pagination)."""
        out: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if after is not None:
                params["after"] = after
            page = self._json(self._http.get("/v1/keywords", params=params))
            out += page["items"]
            after = page["next_after"]
            if after is None:
                return out

    def get_keyword(self, keyword_id: int) -> dict[str, Any]:
        return dict(self._json(self._http.get(f"/v1/keywords/{keyword_id}")))

    def set_threshold(self, keyword_id: int, threshold: float) -> dict[str, Any]:
        return dict(self._json(self._http.patch(f"/v1/keywords/{keyword_id}", json={"threshold": threshold})))

    def update_keyword(self, keyword_id: int, **fields: Any) -> dict[str, Any]:
        """``PATCH /v1/keywords/{id}`` with the given fields (``threshold``, or ``target_fa_per_hour``);
        None values are left out."""
        body = {k: v for k, v in fields.items() if v is not None}
        return dict(self._json(self._http.patch(f"/v1/keywords/{keyword_id}", json=body)))

    def delete_keyword(self, keyword_id: int) -> None:
        self._json(self._http.delete(f"/v1/keywords/{keyword_id}"))

    def detect(
        self, path: str | Path, keywords: list[int] | None = None, debug: bool = False, trace: bool = False
    ) -> dict[str, Any]:
        """``POST /v1/detect``; ``trace``: also every keyword's scores over time (``openkws.plot``)."""
        p = Path(path)
        params: dict[str, Any] = {"debug": debug}
        if trace:
            params["trace"] = True
        if keywords:
            params["keywords"] = keywords
        with open(p, "rb") as f:
            r = self._http.post(
                "/v1/detect", files={"file": (p.name, f, "application/octet-stream")}, params=params
            )
        return dict(self._json(r))

    # -- websocket ------------------------------------------------------------------------------------
    def stream_chunks(
        self,
        chunks: Iterator[bytes],
        sample_rate: int,
        encoding: str = "pcm16le",
        channels: int = 1,
        keywords: list[int] | None = None,
        debug: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Send ``start``, every chunk (a sender thread), then ``stop``; yield server messages as they
        arrive, ending with ``summary``. Raises :class:`StreamClosed` on an abnormal close."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect

        start = {
            "type": "start",
            "version": PROTOCOL_VERSION,
            "sample_rate": sample_rate,
            "encoding": encoding,
            "channels": channels,
            "keywords": keywords,
            "debug": debug,
        }
        try:
            conn = connect(
                _ws_url(self.base_url) + "/v1/stream",
                max_size=None,
                open_timeout=30,
                additional_headers=self._headers or None,
            )
        except (OSError, TimeoutError) as e:
            raise ServerUnreachable(
                "server_unreachable",
                f"cannot reach an openkws server at {self.base_url} "
                f"({_reason(e)}); start one with `openkws serve`, or pass --url / set "
                "OPENKWS_URL",
            ) from None
        except InvalidHandshake as e:
            raise ServerUnreachable(
                "bad_handshake",
                f"{self.base_url} refused the websocket ({_reason(e)}); is it "
                "an openkws server, and is the API key right?",
            ) from None
        with conn as ws:
            ws.send(json.dumps(start))
            ready = json.loads(ws.recv())
            yield ready
            if ready.get("type") != "ready":
                raise StreamClosed(
                    int(ready.get("close_code") or ws.close_code or 0), str(ready.get("code", "")), ready
                )
            errors: queue.Queue[BaseException] = queue.Queue()

            def sender() -> None:
                try:
                    for c in chunks:
                        ws.send(c)
                    ws.send(json.dumps({"type": "stop", "version": PROTOCOL_VERSION}))
                except ConnectionClosed:
                    pass
                except BaseException as e:  # surfaced in the receiving thread
                    errors.put(e)

            t = threading.Thread(target=sender, name="openkws-stream-sender", daemon=True)
            t.start()
            last_error: dict[str, Any] | None = None
            try:
                while True:
                    try:
                        msg = json.loads(ws.recv())
                    except ConnectionClosed:
                        break
                    if msg.get("type") == "error":
                        last_error = msg
                    yield msg
                    if msg.get("type") == "summary":
                        break
            finally:
                t.join(timeout=5)
            if not errors.empty():
                raise errors.get()
            if last_error is not None:
                raise StreamClosed(
                    int(last_error.get("close_code", 0)), str(last_error.get("code")), last_error
                )

    def stream_file(
        self,
        path: str | Path,
        chunk_ms: int = 100,
        realtime: bool = False,
        keywords: list[int] | None = None,
        debug: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Stream an audio file (any soundfile format) as pcm16le at its own rate and channel count."""
        import soundfile as sf

        audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
        step = max(1, int(rate * chunk_ms / 1000))

        def chunks() -> Iterator[bytes]:
            t0 = time.perf_counter()
            for i in range(0, len(audio), step):
                if realtime:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                yield np.ascontiguousarray(audio[i : i + step]).astype("<i2").tobytes()

        yield from self.stream_chunks(chunks(), rate, "pcm16le", audio.shape[1], keywords, debug)

    def stream_microphone(
        self,
        sample_rate: int = 16_000,
        chunk_ms: int = 100,
        seconds: float | None = None,
        keywords: list[int] | None = None,
        debug: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Stream the default microphone (needs the optional ``sounddevice`` package)."""
        try:
            import sounddevice as sd
        except (ImportError, OSError) as e:
            raise RuntimeError(
                f"--mic needs the sounddevice package and PortAudio ({e}); `pip install sounddevice` "
                "(and `apt-get install libportaudio2`), or stream a file instead"
            ) from None
        frames: queue.Queue[bytes | None] = queue.Queue(maxsize=100)
        step = int(sample_rate * chunk_ms / 1000)

        def chunks() -> Iterator[bytes]:
            t_end = None if seconds is None else time.monotonic() + seconds
            with sd.RawInputStream(
                samplerate=sample_rate,
                channels=1,
                dtype="int16",
                blocksize=step,
                callback=lambda data, n, t, status: frames.put(bytes(data)),
            ):
                while t_end is None or time.monotonic() < t_end:
                    item = frames.get()
                    if item is None:
                        return
                    yield item

        yield from self.stream_chunks(chunks(), sample_rate, "pcm16le", 1, keywords, debug)
