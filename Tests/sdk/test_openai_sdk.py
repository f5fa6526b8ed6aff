"""The official OpenAI Python SDK against a real bifrost node and the mock provider."""

import json
import urllib.request

import openai
import pytest

from conftest import VIRTUAL_KEYS


@pytest.fixture
def client(node):
    return openai.OpenAI(base_url=f"{node}/v1", api_key=VIRTUAL_KEYS["team-a"], max_retries=0)


def test_chat_completion(client):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.role == "assistant"
    assert "hello there" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_with_explicit_provider_and_unknown_fields(client):
    r = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        extra_body={"some_vendor_field": {"x": 1}}, temperature=0.2)
    assert r.choices[0].message.content


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me something"}],
        stream=True, stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "stream me something" in text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_openai_client_on_a_claude_model(client):
    r = client.chat.completions.create(
        model="claude-3-5-haiku-latest",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "translated?"}])
    assert "translated?" in r.choices[0].message.content
    assert r.usage.prompt_tokens > 0
    stream = client.chat.completions.create(
        model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "translated stream"}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "translated stream" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert any(c.usage for c in chunks)


def test_embeddings(client):
    r = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(r.data) == 2
    assert len(r.data[0].embedding) > 0
    assert r.usage.prompt_tokens > 0


def test_models(client):
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "claude-3-5-haiku-latest", "text-embedding-3-small"} <= ids


def test_missing_messages_is_a_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert "messages" in str(e.value)


def test_malformed_json_is_a_400(node):
    req = urllib.request.Request(f"{node}/v1/chat/completions", data=b"{not json", method="POST",
                                 headers={"Authorization": f"Bearer {VIRTUAL_KEYS['team-a']}",
                                          "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    body = json.loads(e.value.read())
    assert body["error"]["type"] == "invalid_request_error"


def test_unknown_virtual_key_is_a_401(node):
    bad = openai.OpenAI(base_url=f"{node}/v1", api_key="sk-nobody", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def test_model_not_allowed_for_the_key_is_a_403(node):
    small = openai.OpenAI(base_url=f"{node}/v1", api_key=VIRTUAL_KEYS["team-small"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        small.chat.completions.create(model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "x"}])
    assert "gpt-99" in str(e.value)


def test_body_over_the_limit_is_a_413(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 70000}])
    assert e.value.status_code == 413


def test_rate_limit_is_a_429_with_headers(node):
    small = openai.OpenAI(base_url=f"{node}/v1", api_key=VIRTUAL_KEYS["team-small"], max_retries=0)
    admitted = 0
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(10):
            small.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
            admitted += 1
    assert admitted == 3
    headers = e.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in headers
