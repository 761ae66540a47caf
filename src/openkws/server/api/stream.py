"""``WS /v1/stream``: live detection over a websocket.

The router only accepts, authenticates and admits; :mod:`openkws.server.stream_handler` serves the
protocol (:mod:`openkws.protocol`) and :mod:`openkws.server.admission` holds the stream slot.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from openkws.server.admission import Close, refuse, serving_state, stream_slot
from openkws.server.api.deps import websocket_principal
from openkws.server.auth import WS_SUBPROTOCOL
from openkws.server.stream_handler import serve_stream

router = APIRouter(tags=["stream"])


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Authenticate (auth on: ``Authorization: Bearer``, subprotocol ``bearer.<key>`` or ``?token=``),
    check the stream limits, then serve the protocol."""
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
    try:
        state = serving_state(ws)
        principal = await websocket_principal(state, ws, offered)
        async with stream_slot(state, principal):
            await serve_stream(ws, state, principal.tenant)
    except Close as c:
        await refuse(ws, c)
