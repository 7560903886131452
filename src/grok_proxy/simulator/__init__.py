"""An offline stand-in for api.x.ai, for tests, benchmarks and users without a key."""
