"""`/v1/chat/completions` on the real app (Gemma 3 270M answering Japanese, SmolLM2 English) with the official
`openai` client: whole and streamed replies agree, usage is the models' own token counts, the request's bounds
are honoured, and refusals are typed exceptions."""

from __future__ import annotations

import base64
import io
import time
import wave
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from voice_orchestrator.text import is_japanese

pytestmark = pytest.mark.integration

TOKYO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "日本の首都はどこですか？"}]
PARIS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=180) as made:
        yield made


def test_japanese_whole_and_streamed_agree(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=TOKYO)
    assert whole.object == "chat.completion"
    assert whole.model == "gpt-4o-mini"
    answer = whole.choices[0].message.content
    assert answer
    assert is_japanese(answer), answer
    assert whole.choices[0].finish_reason in ("stop", "length")
    usage = whole.usage
    assert usage is not None
    assert usage.prompt_tokens > 20  # the few-shot prompt the base model reads, not just the question
    assert usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=TOKYO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == answer  # temperature 0: the same reply either way
    finished = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finished[-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == []
    assert chunks[-1].usage == usage


def test_english_goes_to_the_english_model(client: openai.OpenAI) -> None:
    english = [model.id for model in client.models.list() if getattr(model, "languages", None) == ["en"]]
    if english != ["smollm2-135m-instruct"]:
        pytest.skip(f"the profile's English model is not SmolLM2 (llm.per_language): {english}")
    reply = client.chat.completions.create(model="smollm2-135m-instruct", messages=PARIS)
    answer = reply.choices[0].message.content or ""
    assert "paris" in answer.lower(), answer
    # Usage is counted, not estimated: two earlier turns add their tokens to the prompt.
    teacher: ChatCompletionMessageParam = {"role": "system", "content": "You are a geography teacher."}
    earlier: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is the capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]
    short = client.chat.completions.create(model="gpt-4o-mini", messages=[teacher, *PARIS], max_tokens=1)
    longer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[teacher, *earlier, *PARIS], max_tokens=1
    )
    assert short.usage is not None
    assert longer.usage is not None
    assert longer.usage.prompt_tokens >= short.usage.prompt_tokens + 8


def test_the_request_bounds_the_reply(client: openai.OpenAI) -> None:
    cut = client.chat.completions.create(model="gpt-4o-mini", messages=PARIS, max_tokens=2)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens <= 3
    stopped = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=TOKYO,
        stop=["京"],
        max_completion_tokens=40,
    )
    assert "京" not in (stopped.choices[0].message.content or "")


def test_chat_refusals_are_typed_sdk_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-9-imaginary", messages=PARIS)
    assert unknown.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="gpt-4o-mini", messages=PARIS, max_tokens=100_000)
    assert too_many.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as no_question:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "Be brief."}],
        )
    assert no_question.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as picture:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ],
        )
    assert picture.value.param == "messages"


def test_a_spoken_question_gets_a_spoken_reply(
    client: openai.OpenAI, japanese_question: tuple[bytes, str]
) -> None:
    audio, _ = japanese_question
    spoken: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "input_audio",
                    "input_audio": {"data": base64.b64encode(audio).decode(), "format": "wav"},
                }
            ],
        }
    ]
    reply = client.chat.completions.create(
        model="gpt-4o-audio-preview",
        messages=spoken,
        modalities=["text", "audio"],
        audio={"voice": "jf_alpha", "format": "wav"},
    )
    message = reply.choices[0].message
    assert message.content is None
    assert message.audio is not None
    assert is_japanese(message.audio.transcript), message.audio.transcript
    assert message.audio.id.startswith("audio_")
    assert message.audio.expires_at > time.time()
    with wave.open(io.BytesIO(base64.b64decode(message.audio.data))) as wav:
        assert wav.getframerate() == 24_000
        assert wav.getnframes() / 24_000 > 0.5
    assert reply.usage is not None
    assert reply.usage.completion_tokens >= 1
    # Heard, answered in text only: the transcript reached the model as the question.
    text_only = client.chat.completions.create(model="gpt-4o-mini", messages=spoken)
    assert text_only.choices[0].message.content
    assert text_only.choices[0].message.audio is None


def test_a_spoken_reply_streams_sentence_by_sentence(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-audio-preview",
            messages=TOKYO,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "pcm16"},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # The SDK's own type for it: ChoiceDelta.audio (id, data, transcript, expires_at).
    spoken = [
        chunk.choices[0].delta.audio for chunk in chunks if chunk.choices and chunk.choices[0].delta.audio
    ]
    assert spoken, chunks
    assert len({audio.id for audio in spoken}) == 1
    transcript = "".join(audio.transcript or "" for audio in spoken)
    assert is_japanese(transcript), transcript
    pcm = b"".join(base64.b64decode(audio.data or "") for audio in spoken)
    assert len(pcm) / 2 / 24_000 > 0.5
    assert not "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert chunks[-1].usage is not None


def test_audio_chat_refusals(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as streamed:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=TOKYO,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "mp3"},
            stream=True,
        )
    assert streamed.value.param == "audio"
    with pytest.raises(openai.BadRequestError) as unknown_voice:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=TOKYO,
            modalities=["text", "audio"],
            audio={"voice": "nobody", "format": "wav"},
        )
    assert unknown_voice.value.param == "voice"
    garbled: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv", "format": "wav"}}],
        }
    ]
    with pytest.raises(openai.BadRequestError) as not_audio:
        client.chat.completions.create(model="gpt-4o-mini", messages=garbled)
    assert not_audio.value.code == "INVALID_AUDIO_FORMAT"
