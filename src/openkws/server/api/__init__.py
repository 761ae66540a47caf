"""HTTP and websocket routers: thin translations between the wire and the engine/registry."""
