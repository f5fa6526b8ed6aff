"""The official Anthropic Python SDK against a real bifrost node and the mock provider."""

import anthropic
import pytest

from conftest import VIRTUAL_KEYS


@pytest.fixture
def client(node):
    return anthropic.Anthropic(base_url=node, api_key=VIRTUAL_KEYS["team-a"], max_retries=0)


def test_messages(client):
    m = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64,
                               messages=[{"role": "user", "content": "hello claude"}])
    assert m.type == "message" and m.role == "assistant"
    assert "hello claude" in m.content[0].text
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_messages_stream(client):
    with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64,
                                messages=[{"role": "user", "content": "stream claude"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "stream claude" in text
    assert final.usage.output_tokens > 0


def test_anthropic_client_on_an_openai_model(client):
    m = client.messages.create(model="gpt-4o-mini", max_tokens=64, system="be brief",
                               messages=[{"role": "user", "content": "cross the streams"}])
    assert "cross the streams" in m.content[0].text
    assert m.usage.input_tokens > 0
    with client.messages.stream(model="gpt-4o-mini", max_tokens=64,
                                messages=[{"role": "user", "content": "cross stream"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "cross stream" in text
    assert final.usage.output_tokens > 0


def test_missing_max_tokens_is_a_400(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        # The SDK insists on max_tokens; extra_body overrides it with null on the wire.
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=1, extra_body={"max_tokens": None},
                               messages=[{"role": "user", "content": "x"}])
    assert "max_tokens" in str(e.value)


def test_unknown_key_is_a_401(node):
    bad = anthropic.Anthropic(base_url=node, api_key="sk-nobody", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_a_404(client):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-0", max_tokens=8, messages=[{"role": "user", "content": "x"}])
