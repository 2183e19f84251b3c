"""What a language model writes is not the client's fault: hostile model output (control and format
characters, digit runs, one enormous "word", mixed scripts, mark stacks, letters no voice reads, markdown,
emoji only, unassigned code points, nothing at all) goes through the real reply guard, sentence splitter,
`clean_for_speech` and the real voices on every route that speaks a reply. Each answer is audio that decodes,
of clean text or the fallback reply: never a 5xx or a cut stream, and no 4xx either (a refusal is checked to
be in the error contract, then still fails: the request was valid, the text was the model's). `/status` stays
healthy and the TextToSpeech replica within its memory bound.

The model is a stand-in (`EchoLanguageModel`) in an application of its own, wired to the main app's real STT,
TTS and session memory, so the main app is never redeployed. On the spoken chat it writes back the user's
message (the hostile text travels in the request, as a prompt that makes a model repeat it would); the
dialogue's question is speech, so there the test sets the reply through the stand-in's `script` handle
method — immediate, where a user_config or an environment variable would mean a redeploy per example.
"""

from __future__ import annotations

import base64
import io
import json
import unicodedata
import wave
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from ray import serve
from ray.serve.handle import DeploymentHandle

from tests.fuzz_strategies import UNREADABLE_LETTERS, hostile_replies
from tests.integration.faults import deploy_orchestrator
from tests.integration.http import get_status, post_dialogue
from tests.integration.test_client_faults import TTS_REPLICA_BOUND_MB, replica_rss_mb
from tests.integration.test_streaming import stream_dialogue
from voice_orchestrator.errors import HTTP_STATUS, OrchestratorErrorCode
from voice_orchestrator.protocol import ErrorBody
from voice_orchestrator.settings import OrchestratorSettings
from voice_orchestrator.turn import FALLBACK_REPLIES

pytestmark = pytest.mark.integration

APP = "hostile-replies"
EXAMPLES = 25
# Deltas of one character (every boundary split), token-sized, and the whole reply at once.
delta_sizes = st.sampled_from([1, 2, 3, 5, 8, 16, 64, 100_000])
# No shrinking: a replica's memory and /status's failure window outlast the example that changed them, so
# every later example would fail too and shrinking would blame an innocent one. The first failure is the one.
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Watch:
    """After each example: it was answered with speech (the request was valid; what the model wrote is never
    the client's fault), both apps' /status are healthy (read fresh: the test app caches nothing) and the TTS
    replica's resident memory is within the README's bound. Keeps what was answered and the RSS seen."""

    base_url: str
    app_url: str
    answers: Counter[str] = field(default_factory=Counter)
    rss_mb: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rss_mb.append(replica_rss_mb("TextToSpeech"))  # before the first example

    def after(self, answer: str, text: str) -> None:
        self.answers[answer] += 1
        reply = f"the model's reply {ascii(text)[:300]} (len {len(text)})"
        assert answer.startswith("200"), f"{answer} for {reply}"
        for url in (self.app_url, self.base_url):
            code, report = get_status(url)
            assert report.status == "healthy", (url, report.model_dump(mode="json"), reply)
            assert code == 200
        self.rss_mb.append(replica_rss_mb("TextToSpeech"))
        assert self.rss_mb[-1] < TTS_REPLICA_BOUND_MB, (
            f"TTS replica {self.rss_mb[-2]:.0f} -> {self.rss_mb[-1]:.0f} MB after {reply}"
        )

    def summary(self) -> str:
        return f"{dict(self.answers)}; TTS replica RSS {min(self.rss_mb):.0f}-{max(self.rss_mb):.0f} MB"


@pytest.fixture(scope="module")
def app_url(base_url: str) -> Iterator[str]:
    prefix = deploy_orchestrator(APP, OrchestratorSettings(status_cache_seconds=0.0), echo_llm=True)
    try:
        yield base_url + prefix
    finally:
        serve.delete(APP)  # the main app was never touched: nothing else to restore


@pytest.fixture(scope="module")
def model(app_url: str) -> DeploymentHandle[Any]:
    return serve.get_deployment_handle("EchoLanguageModel", app_name=APP)


def written(model: DeploymentHandle[Any]) -> int:
    count: int = model.replies_written.remote().result()
    return count


def spoken(text: str) -> str:
    """What the voice was given (the reply's transcript) was made speakable — something, and no control or
    format characters; whether it was the model's text or the fallback reply."""
    assert text.strip(), "the reply spoke nothing (not even the fallback)"
    unreadable = [c for c in text if unicodedata.category(c) in {"Cc", "Cf"} and not c.isspace()]
    assert not unreadable, (text, unreadable)
    return "200 fallback" if text in FALLBACK_REPLIES.values() else "200 spoken"


def wav_frames(data: bytes) -> int:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        assert wav.getframerate() > 0
        frames: int = wav.getnframes()
    assert len(data) >= 44 + 2 * frames  # the header's count is what the body holds
    return frames


def openai_refusal(error: dict[str, Any], status: int | None = None) -> str:
    """A refusal in OpenAI's error shape (as a response with `status`, or as a stream's last event), the
    client's kind, never a server error: its code."""
    assert status is None or 400 <= status < 500, (status, error)
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] != "server_error", error
    return f"{status} {error['code']}" if status is not None else f"{error['code']} (in stream)"


def spoken_chat(app_url: str, text: str, stream: bool) -> str:
    """One spoken chat whose reply is `text` (echoed by the model); what it answered."""
    body = {
        "model": "gpt-4o-audio-preview",
        "messages": [{"role": "user", "content": text}],
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16" if stream else "wav"},
        "stream": stream,
    }
    url = f"{app_url}/v1/chat/completions"
    if not stream:
        response = httpx.post(url, json=body, timeout=180)
        if response.status_code != 200:
            return openai_refusal(response.json()["error"], response.status_code)
        audio = response.json()["choices"][0]["message"]["audio"]
        assert wav_frames(base64.b64decode(audio["data"])) > 0
        return spoken(audio["transcript"])
    with httpx.stream("POST", url, json=body, timeout=180) as response:
        if response.status_code != 200:
            response.read()
            return openai_refusal(response.json()["error"], response.status_code)
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1:] == ["[DONE]"], events[-3:]  # the stream ended properly, not cut
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        if "error" in chunk:  # a failure after the first byte: OpenAI's error event ends the stream
            return openai_refusal(chunk["error"])
    parts = [
        c["choices"][0]["delta"]["audio"]
        for c in chunks
        if c["choices"] and "audio" in c["choices"][0]["delta"]
    ]
    pcm = b"".join(base64.b64decode(part["data"]) for part in parts)
    assert len(pcm) > 0
    assert len(pcm) % 2 == 0, len(pcm)  # pcm16: whole samples
    return spoken(" ".join(part["transcript"] for part in parts))


def contract_refusal(response: httpx.Response) -> str:
    """A refusal in the dialogue's JSON error contract, the client's kind: its code."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = ErrorBody.model_validate(response.json())
    assert body.request_id == response.headers["x-request-id"]
    return f"{response.status_code} {body.error_code}"


def spoken_dialogue(app_url: str, question: bytes, stream: bool) -> str:
    """One dialogue turn (the model's reply scripted already); what it answered."""
    if not stream:
        response = post_dialogue(app_url, question, language="en")
        if response.status_code != 200:
            return contract_refusal(response)
        assert response.headers["content-type"] == "audio/wav"
        assert wav_frames(response.content) > 0
        return spoken(unquote(response.headers["X-Output-Text"]))
    response, events, _ = stream_dialogue(app_url, question, language="en")
    if response.status_code != 200:
        return contract_refusal(response)
    kinds = [event["type"] for event in events]
    if kinds[-1] == "error":  # a failure after the first byte: the stream ends with the error's body
        error = ErrorBody.model_validate({k: v for k, v in events[-1].items() if k != "type"})
        assert HTTP_STATUS[OrchestratorErrorCode(error.error_code)] < 500, error
        return f"{error.error_code} (in stream)"
    assert kinds[0] == "transcript", kinds
    assert kinds[-1] == "done", kinds
    assert "audio" in kinds, kinds
    audio = [event for event in events if event["type"] == "audio"]
    assert all(wav_frames(base64.b64decode(event["audio"])) > 0 for event in audio)
    return spoken(events[-1]["metadata"]["output_text"])


def test_hostile_replies_are_spoken_on_the_spoken_chat(
    app_url: str, base_url: str, model: DeploymentHandle[Any]
) -> None:
    """Property: whatever the model writes back, `/v1/chat/completions` with `modalities: [text, audio]`
    (whole WAV or streamed pcm16) answers audio that decodes, of text made speakable (or the fallback)."""
    watch = Watch(base_url, app_url)
    before = written(model)

    @PROPERTY
    @given(text=hostile_replies, delta_chars=delta_sizes, stream=st.booleans())
    @example(text=UNREADABLE_LETTERS, delta_chars=3, stream=True)
    def chat(text: str, delta_chars: int, stream: bool) -> None:
        model.script.remote(None, delta_chars).result()  # echo the question
        watch.after(spoken_chat(app_url, text, stream), text)

    chat()
    print(f"spoken chat: {watch.summary()}")
    assert sum(watch.answers.values()) > EXAMPLES, watch.answers
    assert watch.answers["200 spoken"], watch.answers  # not only the fallback: the model's text was spoken
    # Every example reached the stand-in model: its text, not a real model's, is what was spoken.
    assert written(model) - before == sum(watch.answers.values())


def test_hostile_replies_are_spoken_on_the_dialogue(
    app_url: str, base_url: str, model: DeploymentHandle[Any], english_question: tuple[bytes, str]
) -> None:
    """Property: whatever the model answers a (clean, spoken) question with, `/dialogue` and
    `/dialogue/stream` answer audio that decodes, of text made speakable (or the fallback)."""
    watch = Watch(base_url, app_url)
    before = written(model)

    @PROPERTY
    @given(text=hostile_replies, delta_chars=delta_sizes, stream=st.booleans())
    @example(text=UNREADABLE_LETTERS, delta_chars=3, stream=False)
    def dialogue(text: str, delta_chars: int, stream: bool) -> None:
        model.script.remote(text, delta_chars).result()
        watch.after(spoken_dialogue(app_url, english_question[0], stream), text)

    dialogue()
    print(f"dialogue: {watch.summary()}")
    assert sum(watch.answers.values()) > EXAMPLES, watch.answers
    assert watch.answers["200 spoken"], watch.answers
    assert written(model) - before == sum(watch.answers.values())
