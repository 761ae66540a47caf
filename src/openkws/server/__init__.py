"""The HTTP and websocket service: the app factory, routers, admission, auth, limits and metrics."""
