"""What a client sends is the client's fault, on the real app with the official `openai` client: text no voice
can speak and prompts longer than the model's context are 400s (never a 503 the SDK would retry), and
`/status` stays healthy after them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_strategies import hostile_texts
from tests.integration.http import STATUS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=180) as made:
        yield made


def assert_healthy(base_url: str) -> None:
    status = httpx.get(base_url + STATUS, timeout=30).json()
    assert status["status"] == "healthy", status


@pytest.mark.parametrize("text", ["\u200b\u200c\u200d" * 20, "." * 500, "!?" * 100, "\x00\x01\x02"])
def test_text_no_voice_can_speak_is_a_400_and_health_holds(
    client: openai.OpenAI, base_url: str, text: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="pcm")
    assert refused.value.status_code == 400
    assert refused.value.param == "input"
    assert_healthy(base_url)


def test_control_characters_are_dropped_and_the_rest_spoken(client: openai.OpenAI, base_url: str) -> None:
    # A NUL made espeak raise "embedded null character": a 503 with Retry-After, and /status degraded.
    spoken = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello\x00 there.", response_format="pcm"
    )
    assert len(spoken.content) > 24_000  # half a second of speech or more
    assert_healthy(base_url)


def test_a_long_digit_run_is_spoken_in_bounded_chunks(client: openai.OpenAI, base_url: str) -> None:
    spoken = client.audio.speech.create(model="tts-1", voice="alloy", input="7" * 400, response_format="pcm")
    assert len(spoken.content) > 24_000 * 2  # more than a second of speech
    assert_healthy(base_url)


def test_a_prompt_longer_than_the_context_is_context_length_exceeded(
    client: openai.OpenAI, base_url: str
) -> None:
    huge = "hello " * 35_000  # ≈ 200 KB, ≈ 35 000 tokens against a 2048-token context
    for _ in range(2):  # twice: before, two of these turned /status degraded
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": huge}])
        assert refused.value.code == "context_length_exceeded"
        assert refused.value.param == "messages"
    assert_healthy(base_url)


def test_a_long_conversation_is_trimmed_and_answered(client: openai.OpenAI) -> None:
    messages: list[dict[str, str]] = []
    for n in range(120):  # 240 messages (the route takes 256 at most), ≈ 5000 tokens of earlier turns
        messages += [
            {"role": "user", "content": f"What is {n} plus {n}? Please think about it carefully first."},
            {"role": "assistant", "content": f"It is {2 * n}. I added the two numbers together for you."},
        ]
    messages.append({"role": "user", "content": "What is the capital of France?"})
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content


def _parent_pid(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "status").read_text().split("PPid:")[1].split()[0])


def _in_this_cluster(pid: int) -> bool:
    """Whether a process descends from this test process (ray.init started the raylet, which starts the
    replicas): another test run's cluster on the same machine has replicas of the same names."""
    ours = os.getpid()
    for _ in range(32):  # a bounded walk up the process tree
        if pid == ours:
            return True
        if pid <= 1:
            return False
        pid = _parent_pid(pid)
    return False


def replica_rss_mb(deployment: str) -> float:
    """Resident memory of the (only) replica process of a deployment of the app, read from /proc."""
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"ServeReplica:voice:{deployment}".encode() in status.read_bytes() and _in_this_cluster(
                int(status.parent.name)
            ):
                fields = (status.parent / "status").read_text().split("VmRSS:")[1].split()
                return int(fields[0]) / 1024
        except OSError:  # a process that ended meanwhile
            continue
    raise LookupError(f"no replica process of {deployment} in this test run's cluster")


# The bound the README states for a TextToSpeech replica, whatever the input (measured: ≈ 1.2 GB).
TTS_REPLICA_BOUND_MB = 1536


def test_any_text_is_spoken_or_refused_and_the_tts_replica_stays_bounded(
    client: openai.OpenAI, base_url: str
) -> None:
    """Property: text drawn over Unicode categories (control, format, symbols, digits, marks, mixed scripts,
    long runs) to /v1/audio/speech is 200 or 400 (never a 5xx the SDK would retry), /status stays healthy and
    the replica's memory within the bound."""
    answers: dict[int, int] = {}

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(hostile_texts)
    def speak(text: str) -> None:
        body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
        response = httpx.post(f"{base_url}/v1/audio/speech", json=body, timeout=180)
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        if response.status_code == 200:
            assert len(response.content) > 0
        else:  # the client's fault, named; never a 5xx
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "input", response.text

    speak()
    assert sum(answers.values()) >= 25, answers
    assert_healthy(base_url)
    assert replica_rss_mb("TextToSpeech") < TTS_REPLICA_BOUND_MB
