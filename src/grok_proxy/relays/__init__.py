"""The WebSocket and gRPC adapters (the HTTP adapter is routes/)."""
