"""The `grok_proxy.testing` plugin runs a user's own test file, the one docs/testing.md shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
EXAMPLE = re.findall(r"```python\n(.*?)```", GUIDE, re.DOTALL)[0]


DIRECT = """
        import anthropic

        def test_anthropic_tool_use(grok_twin):
            client = anthropic.Anthropic(
                base_url=grok_twin.anthropic_base_url, api_key=grok_twin.api_key
            )
            tool = {"name": "add", "input_schema": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            }}
            message = client.messages.create(
                model="grok-4.3", max_tokens=50, tools=[tool],
                messages=[{"role": "user", "content": "1 + 2?"}],
            )
            assert message.content[0].type == "tool_use"
            assert set(message.content[0].input) == {"a", "b"}
            assert grok_twin.requests()[-1]["path"] == "/v1/messages"
        """
GRPC = """
        from xai_sdk import Client
        from xai_sdk.chat import user

        def test_xai_sdk_through_the_proxy(grok_twin_proxied):
            client = Client(
                api_key=grok_twin_proxied.api_key,
                api_host=grok_twin_proxied.xai_grpc_host,
                use_insecure_channel=True,
            )
            reply = client.chat.create(model="grok-4.3", messages=[user("Hi")]).sample()
            assert reply.content.startswith("Hello!")
            client.close()
        """
# This dev environment's heavy plugins, which a user's run would not load: they only cost time.
UNRELATED = ["-p", "no:hypothesispytest", "-p", "no:schemathesis", "-p", "no:respx"]


# A fresh interpreter and two real servers on a shared 2-core CI machine take a while.
@pytest.mark.timeout(180)
def test_user_tests_run_through_the_plugin(pytester: pytest.Pytester) -> None:
    """The documented example (through the proxy), the simulator alone, and xai-sdk over gRPC."""
    pytester.makepyfile(test_my_grok_app=EXAMPLE, test_direct=DIRECT, test_grpc=GRPC)
    # A fresh interpreter, as a user's `pytest` run: the plugin loads from its entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *UNRELATED, timeout=170)
    result.assert_outcomes(passed=5)
