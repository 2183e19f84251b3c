"""`/v1/audio/transcriptions` and `/v1/audio/translations` on the real app with the official `openai` client:
Japanese and English, every response_format, streaming, and the contract's audio errors as the SDK's typed
exceptions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import openai
import pytest

from voice_orchestrator.audio import encode_wav_pcm16

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=180) as made:
        yield made


def test_japanese_and_english_as_json(
    client: openai.OpenAI, japanese_question: tuple[bytes, str], english_question: tuple[bytes, str]
) -> None:
    for (audio, keyword), model in (
        (japanese_question, "whisper-1"),
        (english_question, "gpt-4o-transcribe"),
    ):
        heard = client.audio.transcriptions.create(model=model, file=("question.wav", audio, "audio/wav"))
        assert keyword in heard.text.lower(), heard.text
        assert heard.usage is not None
        assert heard.usage.type == "duration"
        assert heard.usage.seconds > 1.0


def test_text_verbose_json_and_subtitles(client: openai.OpenAI, japanese_question: tuple[bytes, str]) -> None:
    audio, keyword = japanese_question
    upload = ("question.wav", audio, "audio/wav")
    text = client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="text")
    assert isinstance(text, str)
    assert keyword in text
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=upload,
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    assert verbose.language == "ja"
    assert 1.0 < verbose.duration < 3.0
    assert verbose.segments
    assert "".join(segment.text for segment in verbose.segments) == verbose.text
    for segment in verbose.segments:  # Whisper's own times, within the clip
        assert 0.0 <= segment.start < segment.end <= verbose.duration, verbose.segments
    srt = client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="srt")
    assert isinstance(srt, str)
    assert srt.startswith("1\n00:00:0")
    assert keyword in srt
    vtt = client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="vtt", language="ja"
    )
    assert isinstance(vtt, str)
    assert vtt.startswith("WEBVTT\n\n00:00:0")


def test_streamed_transcript_events(client: openai.OpenAI, english_question: tuple[bytes, str]) -> None:
    audio, keyword = english_question
    events = list(
        client.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", audio, "audio/wav"), stream=True, language="en"
        )
    )
    assert [event.type for event in events][-1] == "transcript.text.done"
    deltas = "".join(event.delta for event in events if event.type == "transcript.text.delta")
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert deltas == done.text
    assert keyword in done.text.lower()


def test_japanese_speech_translated_into_english(
    client: openai.OpenAI, japanese_question: tuple[bytes, str], english_question: tuple[bytes, str]
) -> None:
    audio, _ = japanese_question  # 「今日の天気は？」
    translated = client.audio.translations.create(model="whisper-1", file=("q.wav", audio, "audio/wav"))
    assert "weather" in translated.text.lower(), translated.text
    assert translated.text.isascii(), translated.text
    verbose = client.audio.translations.create(
        model="whisper-1", file=("q.wav", audio, "audio/wav"), response_format="verbose_json"
    )
    assert (verbose.language, getattr(verbose, "task", None)) == ("en", "translate")  # the output's language
    assert verbose.text == translated.text
    assert verbose.segments
    assert verbose.segments[-1].end <= verbose.duration
    english, keyword = english_question  # English speech: translated is transcribed
    srt = client.audio.translations.create(
        model="whisper-1", file=("q.wav", english, "audio/wav"), response_format="srt"
    )
    assert isinstance(srt, str)
    assert srt.startswith("1\n00:00:0"), srt
    assert keyword in srt.lower(), srt
    with pytest.raises(openai.BadRequestError) as garbage:
        client.audio.translations.create(model="whisper-1", file=("q.wav", b"RIFF" * 64, "audio/wav"))
    assert garbage.value.code == "INVALID_AUDIO_FORMAT"


def test_audio_errors_are_typed_sdk_exceptions(
    client: openai.OpenAI, english_question: tuple[bytes, str]
) -> None:
    with pytest.raises(openai.BadRequestError) as garbage:
        client.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", b"not audio at all" * 64, "audio/wav")
        )
    assert garbage.value.code == "INVALID_AUDIO_FORMAT"
    short = encode_wav_pcm16(np.zeros(1600, dtype=np.float32), 16_000)
    with pytest.raises(openai.BadRequestError) as too_short:
        client.audio.transcriptions.create(model="whisper-1", file=("q.wav", short, "audio/wav"))
    assert too_short.value.code == "AUDIO_TOO_SHORT"
    silence = encode_wav_pcm16(np.zeros(32_000, dtype=np.float32), 16_000)
    with pytest.raises(openai.UnprocessableEntityError) as nothing_said:
        client.audio.transcriptions.create(model="whisper-1", file=("q.wav", silence, "audio/wav"))
    assert nothing_said.value.code == "SPEECH_RECOGNITION_FAILED"
    upload = ("q.wav", english_question[0], "audio/wav")
    with pytest.raises(openai.NotFoundError) as wrong_model:
        client.audio.transcriptions.create(model="tts-1", file=upload)
    assert wrong_model.value.code == "MODEL_NOT_FOUND"
    assert wrong_model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad_language:
        client.audio.transcriptions.create(model="whisper-1", file=upload, language="klingon")
    assert bad_language.value.param == "language"
    with pytest.raises(openai.BadRequestError) as bad_format:
        client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="diarized_json")
    assert bad_format.value.param == "response_format"
