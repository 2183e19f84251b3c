"""The OpenAI-compatible models, voices and speech routes on the real app, with the official `openai` package
as the client: what it sends is accepted, what we answer parses into its types, and our errors arrive as its
typed exceptions (404 NotFoundError, 400 BadRequestError, 401 AuthenticationError, 429 RateLimitError)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import av
import httpx
import numpy as np
import openai
import pytest
from pydantic import SecretStr

from tests.integration.faults import deploy_orchestrator
from tests.integration.http import get_status
from voice_orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration

JAPANESE = "今日はいい天気ですね。散歩に行きましょう。"
KEY = {"Authorization": "Bearer s3cret"}
ENGLISH = "The weather is nice today. Let's go for a walk."


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=180) as made:
        yield made


def decoded_seconds(data: bytes) -> tuple[str, int, float]:
    """(container, sample rate, seconds) of an encoded file, as FFmpeg reads it."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = int(stream.codec_context.sample_rate)
        return container.format.name, rate, samples / rate


def loudness(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(samples**2)))


def test_models_lists_the_loaded_stages_and_accepts_aliases(client: openai.OpenAI) -> None:
    models = {model.id: model for model in client.models.list()}
    stages = {getattr(model, "stage", None) for model in models.values()}
    assert stages == {"stt", "llm", "tts", "dialogue"}, models
    assert "whisper-base" in models
    assert "gemma-3-270m" in models
    assert models["kokoro-82m-piper"].owned_by == "voice-orchestrator"
    for alias, stage in (("whisper-1", "stt"), ("tts-1", "tts"), ("gpt-4o-mini", "llm")):
        retrieved = client.models.retrieve(alias)
        assert retrieved.id == alias
        assert getattr(retrieved, "stage", None) == stage
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("gpt-9-imaginary")
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "MODEL_NOT_FOUND"
    assert error["type"] == "not_found_error"
    assert refused.value.response.headers["x-request-id"]


def test_voices_say_which_language_each_speaks(base_url: str) -> None:
    listed = httpx.get(f"{base_url}/v1/audio/voices", timeout=30).json()
    voices = {voice["id"]: voice for voice in listed["data"]}
    assert voices["jf_alpha"]["languages"] == ["ja"]
    assert voices["jm_kumo"]["languages"] == ["ja"]
    assert voices["mei"]["languages"] == ["ja"]  # OpenJTalk's, the fast one
    assert voices["en_US-joe-medium"]["languages"] == ["en"]
    # The Japanese default is what `tts.japanese_voice: auto` chose here, as the status's model says.
    defaults = {voice: card["default_for"] for voice, card in voices.items() if card["default_for"]}
    japanese = next(voice for voice, languages in defaults.items() if languages == ["ja"])
    assert defaults == {japanese: ["ja"], "en_US-joe-medium": ["en"]}
    assert japanese in ("jf_alpha", "mei")
    assert f"({japanese}, auto: " in get_status(base_url)[1].services["tts"].model
    assert "alloy" in listed["openai_voice_names"]


@pytest.mark.parametrize(
    ("text", "voice", "response_format", "container"),
    [
        (JAPANESE, "jf_alpha", "mp3", "mp3"),
        (ENGLISH, "alloy", "opus", "ogg"),
        (JAPANESE, "alloy", "flac", "flac"),
        (ENGLISH, "en_US-joe-medium", "aac", "aac"),
        (JAPANESE, "jm_kumo", "wav", "wav"),
        (JAPANESE, "mei", "wav", "wav"),
    ],
)
def test_speech_in_every_compressed_format(
    client: openai.OpenAI, text: str, voice: str, response_format: str, container: str
) -> None:
    spoken = client.audio.speech.create(
        model="tts-1",
        input=text,
        voice=voice,
        response_format=response_format,  # type: ignore[arg-type]
    )
    name, rate, seconds = decoded_seconds(spoken.content)
    assert container in name
    assert rate in (24_000, 48_000)  # Ogg Opus always decodes at 48 kHz
    assert 1.5 < seconds < 12.0, seconds


def test_pcm_streams_sentence_by_sentence_and_speed_shortens_it(client: openai.OpenAI) -> None:
    # Sentences of a dozen words (each ≈ 0.2 s for the voice to make, 3-4 s of speech): the last one's audio
    # comes well after the first's, however fast the first was sent. With short ones (≈ 80 ms each, the next
    # made while this one was sent) the spread was at times under the 0.1 s asked below.
    long_text = " ".join(
        [
            "This is the first sentence, and it runs on for about a dozen words.",
            "Here is another one that is just as long as the first of them.",
            "And a third sentence ends this little text about nothing in particular.",
        ]
    )
    chunks: list[bytes] = []
    arrivals: list[float] = []
    with client.audio.speech.with_streaming_response.create(
        model="kokoro-82m-piper", input=long_text, voice="alloy", response_format="pcm"
    ) as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            arrivals.append(time.perf_counter())
    pcm = b"".join(chunks)
    # Sentence by sentence: the first sentence's audio arrives while the others are still being synthesised.
    assert len(chunks) >= 3
    assert arrivals[-1] - arrivals[0] > 0.1, arrivals
    normal_s = len(pcm) / 2 / 24_000
    assert 6.0 < normal_s < 25.0
    assert loudness(pcm) > 0.01
    faster = client.audio.speech.create(
        model="tts-1", input=long_text, voice="alloy", response_format="pcm", speed=2.0
    ).content
    assert 0.4 < len(faster) / len(pcm) < 0.65


def test_speech_as_server_sent_events(base_url: str) -> None:
    events: list[dict[str, object]] = []
    with httpx.stream(
        "POST",
        f"{base_url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "input": JAPANESE,
            "voice": "jf_alpha",
            "response_format": "pcm",
            "stream_format": "sse",
        },
        timeout=180,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    assert [event["type"] for event in events[-1:]] == ["speech.audio.done"]
    deltas = [event for event in events if event["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2  # one per sentence
    audio = b"".join(base64.b64decode(str(event["audio"])) for event in deltas)
    assert len(audio) / 2 / 24_000 > 1.5
    assert events[-1]["usage"] == {
        "input_tokens": len(JAPANESE),
        "output_tokens": 0,
        "total_tokens": len(JAPANESE),
    }


def test_speech_refusals_are_typed_sdk_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as english_voice:
        client.audio.speech.create(model="tts-1", input=JAPANESE, voice="en_US-joe-medium")
    assert english_voice.value.code == "INVALID_REQUEST"
    assert english_voice.value.param == "voice"
    assert "Japanese" in english_voice.value.message
    with pytest.raises(openai.BadRequestError) as japanese_voice:
        client.audio.speech.create(model="tts-1", input=ENGLISH, voice="jf_alpha")
    assert japanese_voice.value.param == "voice"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.audio.speech.create(model="tts-1", input=ENGLISH, voice="nobody")
    assert unknown.value.param == "voice"
    with pytest.raises(openai.NotFoundError) as wrong_model:
        client.audio.speech.create(model="whisper-1", input=ENGLISH, voice="alloy")
    assert wrong_model.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.audio.speech.create(model="tts-1", input="a" * 5000, voice="alloy")
    assert too_long.value.param == "input"
    with pytest.raises(openai.BadRequestError) as bad_format:
        client.audio.speech.create(model="tts-1", input=ENGLISH, voice="alloy", response_format="ogg")  # type: ignore[arg-type]
    assert bad_format.value.param == "response_format"


def test_the_api_key_and_admission_hold_on_v1(base_url: str) -> None:
    prefix = deploy_orchestrator(
        "keyed_v1", OrchestratorSettings(api_key=SecretStr("s3cret"), max_concurrent_dialogues=1)
    )
    url = f"{base_url}{prefix}/v1"
    with openai.OpenAI(base_url=url, api_key="wrong", max_retries=0, timeout=180) as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            stranger.models.list()
        assert refused.value.code == "UNAUTHORIZED"
    # Kokoro speaks at about real time on two cores: six sentences hold the slot for seconds.
    long_text = "".join(f"これは{n}番目の長い文で、ゆっくり読み上げられます。" for n in range(6))
    with openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0, timeout=180) as member:
        assert any("whisper" in model.id for model in member.models.list())
        with ThreadPoolExecutor(max_workers=1) as pool:
            holding = pool.submit(
                member.audio.speech.create,
                model="tts-1",
                input=long_text,
                voice="alloy",
                response_format="pcm",
            )
            # The one slot is taken while the long input is spoken (the status route counts it).
            deadline = time.monotonic() + 60
            while (
                httpx.get(f"{base_url}{prefix}/api/orchestrator/status", headers=KEY, timeout=30).json()[
                    "active_dialogues"
                ]
                < 1
            ):
                assert time.monotonic() < deadline, "the long speech request never took its slot"
                time.sleep(0.05)
            with pytest.raises(openai.RateLimitError) as busy:
                member.audio.speech.create(model="tts-1", input="Hello.", voice="alloy")
            assert busy.value.code == "TOO_MANY_REQUESTS"
            assert busy.value.response.headers["retry-after"] == "1"
            assert len(holding.result(timeout=600).content) > 2 * 24_000 * 6  # it was spoken whole
        assert member.audio.speech.create(model="tts-1", input="Hello.", voice="alloy").content
