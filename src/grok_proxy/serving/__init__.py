"""The server layer: from a connection to a row (HTTP) or a relay (WebSocket)."""
