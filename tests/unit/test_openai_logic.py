"""The OpenAI-compatible layer's pure logic: model ids and aliases, voices against the text's language, the
error shape from the one table, the audio formats and the SSE framing (the routes themselves are tested on the
real app with the official client: tests/integration/test_openai_*.py)."""

from __future__ import annotations

import io
import json
import wave

import av
import numpy as np
import pytest
import soundfile
from starlette.datastructures import FormData

from tests.unit.test_edge import Recorder, http_scope, plain
from voice_orchestrator.api.openai.catalog import Catalog, model_id
from voice_orchestrator.api.openai.chat import finish_reason, reply_request
from voice_orchestrator.api.openai.chat_audio import has_audio
from voice_orchestrator.api.openai.chat_protocol import ChatCompletionRequest
from voice_orchestrator.api.openai.encoding import SpeechEncoder, change_tempo, closed_wav
from voice_orchestrator.api.openai.gateway import sse_data
from voice_orchestrator.api.openai.protocol import SpeechAudioDelta, TranscriptionForm, TranscriptionSegment
from voice_orchestrator.api.openai.speech import sentences_to_speak, speakable_sentences
from voice_orchestrator.api.openai.transcription import parse_form, subtitles, timestamp
from voice_orchestrator.edge import EdgeMiddleware
from voice_orchestrator.engines.prompts import chat_messages, few_shot_prompt
from voice_orchestrator.errors import (
    HTTP_STATUS,
    OPENAI_CODES,
    OrchestratorError,
    OrchestratorErrorCode,
    is_openai_path,
    openai_error,
)
from voice_orchestrator.protocol import ChatMessage, EngineInfo, ReplyRequest, TokenUsage
from voice_orchestrator.settings import IngressSettings

INFOS = {
    "stt": EngineInfo(engine="faster-whisper", model="whisper-base (packaged)"),
    "llm": EngineInfo(
        engine="llama-cpp",
        model="gemma-3-270m Q4_K_M (packaged)",
        extra={
            "per_language": {"en": {"engine": "llama-cpp", "model": "smollm2-135m-instruct Q4_1 (packaged)"}}
        },
    ),
    "tts": EngineInfo(
        engine="embedded",
        model="kokoro-82M int8 (jf_alpha) + piper:en_US-joe-medium",
        extra={
            "model_id": "kokoro-82m-piper",
            "voices": [
                {"id": "jf_alpha", "languages": ["ja"]},
                {"id": "jm_kumo", "languages": ["ja"]},
                {"id": "en_US-joe-medium", "languages": ["en"]},
            ],
            "default_voices": {"ja": "jf_alpha", "en": "en_US-joe-medium"},
        },
    ),
}
CATALOG = Catalog.of(INFOS, created=1_700_000_000)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("whisper-base (packaged)", "whisper-base"),
        ("gemma-3-270m Q4_K_M (packaged)", "gemma-3-270m"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", "qwen2.5-0.5b-instruct-q4_k_m.gguf"),
    ],
)
def test_model_ids_are_the_engines_names_without_notes(name: str, expected: str) -> None:
    assert model_id(name) == expected


def test_the_catalog_lists_every_stage_and_the_per_language_model() -> None:
    cards = {card.id: card for card in CATALOG.cards()}
    assert {card.stage for card in cards.values()} == {"stt", "llm", "tts", "dialogue"}
    assert cards["smollm2-135m-instruct"].languages == ["en"]
    assert cards["gemma-3-270m"].languages is None
    assert "whisper-1" in cards["whisper-base"].aliases


def test_aliases_resolve_only_for_their_task() -> None:
    assert CATALOG.resolve("whisper-1", "stt").id == "whisper-base"
    assert CATALOG.resolve("tts-1-hd", "tts").id == "kokoro-82m-piper"
    assert CATALOG.resolve("smollm2-135m-instruct", "llm").languages == ("en",)
    with pytest.raises(OrchestratorError) as wrong_task:
        CATALOG.resolve("tts-1", "stt")
    assert wrong_task.value.code is OrchestratorErrorCode.MODEL_NOT_FOUND
    assert wrong_task.value.http_status == 404
    assert "whisper-1" in wrong_task.value.message
    assert CATALOG.find("gpt-4o-mini").id == "gpt-4o-mini"
    assert CATALOG.find("gpt-4o-mini").root == "gemma-3-270m Q4_K_M (packaged)"


@pytest.mark.parametrize(
    ("voice", "text", "expected"),
    [
        ("alloy", "こんにちは。", None),
        ("ALLOY", "Hello.", None),
        ("jf_alpha", "こんにちは。", "jf_alpha"),
        ("en_US-joe-medium", "Hello there.", "en_US-joe-medium"),
        ("jm_kumo", "東京へ行きます。Then home.", "jm_kumo"),
    ],
)
def test_a_voice_that_speaks_the_text_is_used(voice: str, text: str, expected: str | None) -> None:
    assert CATALOG.voice_for(voice, text) == expected


@pytest.mark.parametrize(
    ("voice", "text", "says"),
    [
        ("en_US-joe-medium", "こんにちは。", "jf_alpha"),
        ("jf_alpha", "Hello there.", "en_US-joe-medium"),
        ("nobody", "Hello there.", "alloy"),
    ],
)
def test_a_voice_that_cannot_speak_the_text_is_a_clear_400(voice: str, text: str, says: str) -> None:
    with pytest.raises(OrchestratorError) as refused:
        CATALOG.voice_for(voice, text)
    assert refused.value.http_status == 400
    assert refused.value.details is not None
    assert refused.value.details["field"] == "voice"
    assert says in refused.value.message  # it names what would work


def test_openai_errors_follow_the_one_table() -> None:
    types = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}
    for code, status in HTTP_STATUS.items():
        body = openai_error(code.value, "m", {"field": "voice"}, status)["error"]
        assert body["code"] == OPENAI_CODES.get(code.value, code.value)  # OpenAI's own where it has one
        assert body["param"] == "voice"
        expected = types.get(status, "server_error" if status >= 500 else "invalid_request_error")
        assert body["type"] == expected
    assert openai_error("INVALID_REQUEST", "m", None, 400)["error"]["param"] is None
    assert is_openai_path("/v1/models")
    assert is_openai_path("/v1")
    assert not is_openai_path("/v10/models")
    assert not is_openai_path("/api/orchestrator/dialogue")


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("response_format", "container"),
    [("mp3", "mp3"), ("opus", "ogg"), ("aac", "aac"), ("flac", "flac"), ("wav", "wav")],
)
def test_each_format_decodes_to_the_speech_it_was_given(response_format: str, container: str) -> None:
    encoder = SpeechEncoder(response_format)  # type: ignore[arg-type]
    # Two sentences at a voice's own rate (Piper's 22.05 kHz), streamed one after the other.
    data = encoder.encode(_tone(1.0, 22_050), 22_050) + encoder.encode(_tone(0.5, 22_050), 22_050)
    data += encoder.finish()
    with av.open(io.BytesIO(data), mode="r") as opened:
        assert container in opened.format.name
        stream = opened.streams.audio[0]
        samples = sum(frame.samples for frame in opened.decode(stream))
        seconds = samples / stream.codec_context.sample_rate
    assert 1.45 < seconds < 1.6, seconds


def test_pcm_is_24_khz_16_bit_and_streams_at_once() -> None:
    encoder = SpeechEncoder("pcm")
    first = encoder.encode(_tone(1.0, 22_050), 22_050)
    assert abs(len(first) - 2 * 24_000) <= 4
    assert encoder.finish() == b""


def test_wav_streams_from_the_first_sentence_and_every_reader_reads_it_whole() -> None:
    encoder = SpeechEncoder("wav")
    first = encoder.encode(_tone(1.0, 22_050), 22_050)
    assert first.startswith(b"RIFF\xff\xff\xff\xffWAVE")  # the header, its length unknown, then samples
    assert abs(len(first) - 44 - 2 * 24_000) <= 4
    data = first + encoder.encode(_tone(0.5, 22_050), 22_050) + encoder.finish()
    expected = (len(data) - 44) // 2
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")  # libsndfile, as players and scripts
    assert (rate, len(samples)) == (24_000, expected)
    with wave.open(io.BytesIO(data)) as reader:  # Python's own reader goes to the end of the stream
        assert len(reader.readframes(10**9)) // 2 == expected
    with av.open(io.BytesIO(data), mode="r") as opened:  # FFmpeg
        assert sum(frame.samples for frame in opened.decode(audio=0)) == expected
    with wave.open(io.BytesIO(closed_wav(data))) as reader:  # sent whole (chat's message.audio): sizes known
        assert reader.getnframes() == expected


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_changes_the_duration(speed: float) -> None:
    changed = change_tempo(_tone(2.0, 24_000), 24_000, speed)
    assert abs(len(changed) / 24_000 - 2.0 / speed) < 0.1


def test_long_input_is_spoken_sentence_by_sentence() -> None:
    text = "今日は晴れです。明日は雨でしょう。 **Bold** words and a link https://example.com. The end!"
    assert speakable_sentences(text, 40) == [
        "今日は晴れです。",
        "明日は雨でしょう。",
        "Bold words and a link",  # the link's trailing period goes with the link
        "The end!",
    ]


def test_speech_input_is_cut_as_a_streamed_reply_is() -> None:
    # /v1/audio/speech and Wyoming's synthesize cut the client's text with the dialogue's settings: the first
    # chunk ends at a comma once it has stream_first_chunk_chars, so its audio starts sooner.
    text = "はい、もちろんです、今日の東京はとても良い天気で、気温も二十度くらいです。"
    assert speakable_sentences(text, 40) == [text]
    first, rest = "はい、もちろんです、", "今日の東京はとても良い天気で、気温も二十度くらいです。"
    assert speakable_sentences(text, 40, 10) == [first, rest]
    settings = IngressSettings()
    assert sentences_to_speak(text, settings, "input") == speakable_sentences(
        text, settings.stream_soft_split_chars, settings.stream_first_chunk_chars
    )


def test_sse_events_are_data_lines() -> None:
    assert (
        sse_data(SpeechAudioDelta(audio="AAA=")) == b'data: {"type":"speech.audio.delta","audio":"AAA="}\n\n'
    )
    assert sse_data("[DONE]") == b"data: [DONE]\n\n"
    assert sse_data({"text": "東京"}) == 'data: {"text":"東京"}\n\n'.encode()


def test_subtitles_and_timestamps() -> None:
    assert timestamp(3723.0456, ",") == "01:02:03,046"
    segments = [TranscriptionSegment(id=0, start=0.0, end=2.5, text="今日の天気は？")]
    assert subtitles(segments, "srt") == "1\n00:00:00,000 --> 00:00:02,500\n今日の天気は？\n"
    assert subtitles(segments, "vtt") == "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n今日の天気は？\n"


def test_transcription_form_fields() -> None:
    form = FormData(
        [
            ("model", "whisper-1"),
            ("timestamp_granularities[]", "segment"),
            ("stream", "true"),
            ("include[]", "x"),
        ]
    )
    fields, upload = parse_form(form, TranscriptionForm)
    assert upload is None
    assert fields.timestamp_granularities == ["segment"]
    assert fields.stream is True
    with pytest.raises(OrchestratorError) as refused:
        parse_form(
            FormData([("model", "whisper-1"), ("timestamp_granularities[]", "word")]), TranscriptionForm
        )
    assert refused.value.details == {"field": "timestamp_granularities"}


def _chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "gpt-4o-mini", **fields})


def test_a_chat_request_becomes_the_engines_request() -> None:
    body = _chat(
        messages=[
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": [{"type": "text", "text": "東京は？"}]},
        ],
        max_completion_tokens=30,
        stop="。",
    )
    asked = reply_request(body, None, 512)
    assert asked.language == "ja"  # the last user message's script
    assert asked.text == "東京は？"
    assert asked.max_tokens == 30
    assert asked.stop == ["。"]
    assert asked.messages is not None
    assert [message.role for message in asked.messages] == ["system", "user", "assistant", "user"]
    assert reply_request(_chat(messages=[{"role": "user", "content": "東京"}]), "en", 512).language == "en"
    assert reply_request(_chat(messages=[{"role": "user", "content": "Hi"}]), None, 512).max_tokens == 512


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"messages": [{"role": "system", "content": "Be brief."}]}, "messages"),
        ({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 513}, "max_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages"),
    ],
)
def test_chat_requests_refused_name_their_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(OrchestratorError) as refused:
        reply_request(_chat(**fields), None, 512)
    assert refused.value.details == {"field": field}


def test_a_clients_conversation_in_the_few_shot_prompt() -> None:
    asked = ReplyRequest(
        text="",
        language="en",
        messages=[
            ChatMessage(role="system", content="You are terse."),
            ChatMessage(role="user", content="Capital of Italy?"),
            ChatMessage(role="assistant", content="Rome."),
            ChatMessage(role="user", content="And of France?"),
        ],
    )
    prompt = few_shot_prompt(asked)
    assert prompt.startswith("You are terse.\n\n")
    assert prompt.endswith("User: Capital of Italy?\nAssistant: Rome.\nUser: And of France?\nAssistant:")
    assert chat_messages(asked)[0] == {"role": "system", "content": "You are terse."}
    bare = ReplyRequest(text="Hi", language="en", messages=[ChatMessage(role="user", content="Hi")])
    assert chat_messages(bare) == [
        {
            "role": "system",
            "content": "You are a helpful assistant. Reply in the user's language (en), briefly.",
        },
        {"role": "user", "content": "Hi"},
    ]
    # The dialogue routes' requests are unchanged: our own system prompt and the session's turns.
    plain = ReplyRequest(text="Hi", language="en")
    assert chat_messages(plain)[0]["content"].startswith("You are a helpful voice assistant.")
    assert few_shot_prompt(plain).endswith("User: Hi\nAssistant:")


def test_finish_reason_is_length_at_the_bound() -> None:
    assert finish_reason(TokenUsage(prompt_tokens=5, completion_tokens=8, total_tokens=13), 8) == "length"
    assert finish_reason(TokenUsage(prompt_tokens=5, completion_tokens=3, total_tokens=8), 8) == "stop"


def test_audio_parts_are_read_from_user_messages_only() -> None:
    spoken = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    asked = _chat(messages=[{"role": "user", "content": [{"type": "text", "text": "Listen:"}, spoken]}])
    assert has_audio(asked)
    assert asked.messages[0].text() == "Listen:"  # the audio part is transcribed, not read as text
    assert not has_audio(_chat(messages=[{"role": "user", "content": "Hi"}]))
    with pytest.raises(ValueError, match="input_audio"):
        _chat(messages=[{"role": "assistant", "content": [spoken]}]).messages[0].parts()
    assert _chat(messages=[{"role": "user", "content": "Hi"}], modalities=["text", "audio"]).speaks


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (429, "rate_limit_error", "TOO_MANY_REQUESTS"),
        (500, "server_error", "INTERNAL_ERROR"),
        (404, "not_found_error", "NOT_FOUND"),
    ],
)
async def test_the_edge_answers_v1_routes_in_openais_shape(status: int, error_type: str, code: str) -> None:
    recorder = Recorder()
    scope = {
        **http_scope([(b"x-request-id", b"rid-7")]),
        "path": "/v1/audio/speech",
        "raw_path": b"/v1/audio/speech",
    }
    await recorder.call(EdgeMiddleware(plain(status)), scope)
    assert recorder.status == status
    assert recorder.headers[b"x-request-id"] == b"rid-7"
    body = json.loads(recorder.body)
    assert body == {
        "error": {"message": body["error"]["message"], "type": error_type, "param": None, "code": code}
    }
    # The dialogue routes keep the contract's own body.
    dialogue = Recorder()
    await dialogue.call(EdgeMiddleware(plain(status)), http_scope())
    assert dialogue.error().error_code == code
