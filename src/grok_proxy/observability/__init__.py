"""Metrics, logs and traces: observers of every call."""
