"""The call path: one protocol-neutral way to reach the upstream and relay its answer."""
