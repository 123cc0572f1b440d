"""The OpenAI API as other tools use it — the official ``openai`` client and LangChain — on the studio's gateway,
answered by vLLM's own serving layer: every row of issue 15's table, on the tiny model where its random weights
can show it, and on SmolLM2 for what needs a model that follows instructions (JSON, tools)."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest

EMBEDDER = "all-MiniLM-L6-v2"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


@pytest.fixture(scope="module")
def client(studio) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{studio.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def token_of(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


# ---- the tiny model ---------------------------------------------------------------------------------------------

def test_logprobs_and_top_logprobs(client, studio):
    reply = client.chat.completions.create(model=studio.model, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 4
    for position in content:
        assert len(position.top_logprobs) == 3
        assert position.logprob <= 0
        # Greedy decoding: the chosen token is the most likely one.
        assert position.logprob == pytest.approx(max(t.logprob for t in position.top_logprobs), abs=1e-4)
    assert "".join(p.token for p in content) == reply.choices[0].message.content


def test_n_returns_that_many_choices(client, studio):
    reply = client.chat.completions.create(model=studio.model, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=3, temperature=1.0, n=2, seed=7)
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.usage.completion_tokens == 6


def test_completions_echo_with_logprobs_as_lm_eval_harness_asks(client, studio, token_of):
    prompt = "The studio runs on Ray"
    reply = client.completions.create(model=studio.model, prompt=prompt, max_tokens=1, temperature=0, echo=True,
                                      logprobs=1)
    choice = reply.choices[0]
    assert choice.text.startswith(prompt)
    prompt_tokens = len(token_of(prompt))
    assert len(choice.logprobs.tokens) == prompt_tokens + 1
    assert choice.logprobs.token_logprobs[0] is None  # nothing comes before the first token
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs[1:])
    assert "".join(choice.logprobs.tokens) == choice.text


def test_logit_bias_and_seed_reach_the_sampler(client, studio, token_of):
    forced = token_of(" Ray")[0]
    reply = client.completions.create(model=studio.model, prompt="Hello", max_tokens=5, temperature=0,
                                      logit_bias={str(forced): 100})
    assert reply.choices[0].text == " Ray" * 5
    ask = dict(model=studio.model, prompt="Hello", max_tokens=8, temperature=1.5, seed=1234)
    first, again = client.completions.create(**ask), client.completions.create(**ask)
    other = client.completions.create(**(ask | {"seed": 4321}))
    assert first.choices[0].text == again.choices[0].text
    assert other.choices[0].text != first.choices[0].text


def test_stop_and_penalties_are_applied(client, studio, token_of):
    forced = token_of(" Ray")[0]
    # Without the stop string this answer is " Ray" eight times (above); with it, vLLM stops at the first one and
    # leaves the stop string out, as OpenAI does.
    reply = client.completions.create(model=studio.model, prompt="Hello", max_tokens=8, temperature=0,
                                      logit_bias={str(forced): 100}, stop=[" Ray"])
    assert reply.choices[0].text == "" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].model_extra["stop_reason"] == " Ray"
    # A strong frequency penalty beats a mild bias: the biased token cannot repeat forever.
    repeated = client.completions.create(model=studio.model, prompt="Hello", max_tokens=8, temperature=0,
                                         logit_bias={str(forced): 5}, frequency_penalty=2.0)
    assert repeated.choices[0].text != " Ray" * 8


def test_responses_api_non_stream_and_stream(client, studio):
    answer = client.responses.create(model=studio.model, input="Hello", max_output_tokens=4, temperature=0)
    assert answer.object == "response" and answer.output_text
    events = list(client.responses.create(model=studio.model, input="Hello", max_output_tokens=4, temperature=0,
                                          stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == answer.output_text


def test_embeddings_from_the_packaged_minilm(client):
    listed = {m.id: m for m in client.models.list().data}
    assert listed[EMBEDDER].model_extra["kind"] == "embedding"
    texts = ["a cat sleeps on the sofa", "a kitten naps on the couch", "the stock market fell sharply"]
    data = client.embeddings.create(model=EMBEDDER, input=texts).data
    vectors = [d.embedding for d in data]
    assert [len(v) for v in vectors] == [384] * 3
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2
    # The same vectors as the vdb memory's embedder computes in-process.
    from sage_studio.memory.embeddings import get_embedder

    local = get_embedder(EMBEDDER).encode(texts[:1])[0]
    assert max(abs(a - b) for a, b in zip(local, vectors[0])) < 1e-5


def test_what_vllm_refuses_is_a_clear_400_naming_the_field(studio):
    url = f"{studio.base_url}/v1"
    cases = [
        ("chat/completions", {"messages": "not a list"}, "messages"),
        ("completions", {"prompt": "x", "max_tokens": 10**12}, "max_tokens"),
        ("chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}, None),
    ]
    for path, body, param in cases:
        resp = httpx.post(f"{url}/{path}", json={"model": studio.model} | body, timeout=60)
        assert resp.status_code == 400, (path, resp.text)
        error = resp.json()["error"]
        assert error["message"] and error["code"] == 400
        if param is not None:
            assert error["param"] == param, error
    assert httpx.post(f"{url}/chat/completions", content=b"{not json", timeout=10).status_code == 400
    missing = httpx.post(f"{url}/chat/completions", json={"messages": []}, timeout=10)
    assert missing.status_code == 400 and "'model' is required" in missing.json()["error"]["message"]


def test_langchain_chat_openai_invokes_and_streams(studio):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{studio.base_url}/v1", api_key="unused", model=studio.model, temperature=0,
                     max_tokens=6, max_retries=0)
    whole = llm.invoke("Hello")
    streamed = "".join(chunk.content for chunk in llm.stream("Hello"))
    assert whole.content and streamed == whole.content


# ---- SmolLM2: structured output and tools -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol(smol_studio) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{smol_studio}/v1", api_key="unused", max_retries=0, timeout=600)


@pytest.mark.slow
def test_json_object_and_strict_json_schema(smol):
    ask = [{"role": "system", "content": "You answer with one short JSON object and nothing else."},
           {"role": "user", "content": 'The capital of France, as JSON with the key "capital".'}]
    loose = smol.chat.completions.create(model="smollm2", messages=ask, max_tokens=300, temperature=0,
                                         response_format={"type": "json_object"})
    assert loose.choices[0].finish_reason == "stop"
    assert "Paris" in json.loads(loose.choices[0].message.content).values()
    schema = {"type": "object", "properties": {"capital": {"type": "string", "enum": ["Paris", "Berlin", "Rome"]}},
              "required": ["capital"], "additionalProperties": False}
    strict = smol.chat.completions.create(
        model="smollm2", messages=ask, max_tokens=60, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}})
    assert json.loads(strict.choices[0].message.content) == {"capital": "Paris"}


@pytest.mark.slow
@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_choice_returns_a_tool_call(smol, tool_choice):
    reply = smol.chat.completions.create(model="smollm2", messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                                         tool_choice=tool_choice, max_tokens=80, temperature=0)
    message = reply.choices[0].message
    assert message.tool_calls, message
    call = message.tool_calls[0]
    # As on OpenAI's API: a required call ends with "tool_calls", a named one with "stop".
    assert call.function.name == "get_weather"
    assert reply.choices[0].finish_reason == ("tool_calls" if tool_choice == "required" else "stop")
    # The arguments are JSON and name the city. (SmolLM2-135M writes them as a bare string, '"Paris"', rather than
    # {"city": "Paris"}: that is what vLLM's hermes parser makes of this small model's output, on its server too.)
    assert "Paris" in json.dumps(json.loads(call.function.arguments))
    # The tool's answer goes back as a `tool` turn and the model answers in text.
    follow = smol.chat.completions.create(model="smollm2", max_tokens=30, temperature=0, tools=[WEATHER_TOOL],
                                          messages=ASK_WEATHER + [message.model_dump(exclude_none=True),
                                                                  {"role": "tool", "tool_call_id": call.id,
                                                                   "content": '{"forecast": "sunny, 21 C"}'}])
    assert follow.choices[0].message.content


@pytest.mark.slow
def test_langchain_structured_output_with_json_schema(smol_studio):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Capital(BaseModel):
        """The capital city of a country."""

        country: str = Field(description="The country")
        capital: str = Field(description="Its capital city")

    llm = ChatOpenAI(base_url=f"{smol_studio}/v1", api_key="unused", model="smollm2",
                     temperature=0, max_tokens=80, max_retries=0)
    answer = llm.with_structured_output(Capital, method="json_schema").invoke("What is the capital of France?")
    assert isinstance(answer, Capital) and answer.capital == "Paris"


@pytest.mark.slow
def test_tool_call_turns_round_trip_through_a_session(smol, smol_studio):
    """A streamed tool call is stored with its id, name and arguments; the next request sends the session's messages
    back as they are, with the tool's result, and the whole exchange reads back in order."""
    sessions = f"{smol_studio}/sessions"
    session_id = httpx.post(sessions, timeout=30).json()["id"]
    stream = smol.chat.completions.create(model="smollm2", messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                                          tool_choice="required", max_tokens=80, temperature=0, stream=True,
                                          extra_body={"session_id": session_id})
    streamed_args = "".join(c.choices[0].delta.tool_calls[0].function.arguments or "" for c in stream
                            if c.choices and c.choices[0].delta.tool_calls)
    stored = httpx.get(f"{sessions}/{session_id}", timeout=30).json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    call = stored[1]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"] == streamed_args
    assert call["id"] and "Paris" in streamed_args
    history = [{k: m[k] for k in ("role", "content", "tool_calls", "tool_call_id") if m.get(k) is not None}
               for m in stored]
    result = {"role": "tool", "tool_call_id": call["id"], "content": '{"forecast": "sunny, 21 C"}'}
    follow = smol.chat.completions.create(model="smollm2", messages=[*history, result], tools=[WEATHER_TOOL],
                                          max_tokens=30, temperature=0, extra_body={"session_id": session_id})
    session = httpx.get(f"{sessions}/{session_id}", timeout=30).json()
    assert [(m["role"], m.get("tool_call_id")) for m in session["messages"]] == [
        ("user", None), ("assistant", None), ("tool", call["id"]), ("assistant", None)]
    assert session["messages"][2]["content"] == result["content"]
    assert session["messages"][3]["content"] == follow.choices[0].message.content
    assert session["title"] == ASK_WEATHER[0]["content"]
