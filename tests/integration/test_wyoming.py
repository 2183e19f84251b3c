"""The Wyoming door (Home Assistant's voice protocol) on the real app: the `wyoming` package's client as Home
Assistant's integration drives it — describe, transcribe, synthesize, streamed synthesis — and a client that
breaks the protocol: each refusal an `error` event with the API's code, and the server serving on."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from ray import serve
from wyoming.asr import Transcribe, Transcript
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from bench.serving import free_ports
from tests.conftest import TEST_ARGS, WYOMING_PORT
from tests.integration.faults import deploy_orchestrator
from tests.integration.wyoming_client import (
    HOST,
    collect,
    describe,
    pcm16k,
    read,
    send_audio,
    synthesize,
    synthesize_streamed,
    transcribe,
)
from voice_orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration

# Speech rates far outside any voice's (seconds per character): the audio must be speech of this text.
SECONDS_PER_CHAR = {"ja": (0.05, 0.5), "en": (0.02, 0.2)}


async def test_describe_advertises_our_whisper_and_voices_with_their_languages(base_url: str) -> None:
    info = await describe()
    [asr] = info.asr
    assert {"ja", "en"} <= set(asr.models[0].languages)
    [tts] = info.tts
    assert tts.supports_synthesize_streaming
    voices = {voice.name: voice.languages for voice in tts.voices}
    async with httpx.AsyncClient(timeout=30) as http:
        listed = (await http.get(f"{base_url}/v1/audio/voices")).json()["data"]
    assert voices == {voice["id"]: voice["languages"] for voice in listed}  # one catalog, one truth
    assert voices["jf_alpha"] == ["ja"]


@pytest.mark.parametrize("language", ["ja", "en", None])
async def test_a_spoken_question_is_transcribed(
    base_url: str,
    language: str | None,
    japanese_question: tuple[bytes, str],
    english_question: tuple[bytes, str],
) -> None:
    wav, keyword = english_question if language == "en" else japanese_question
    event = await transcribe(pcm16k(wav), language)  # None: the language is detected
    assert Transcript.is_type(event.type), event
    transcript = Transcript.from_event(event)
    assert keyword in transcript.text.lower()
    assert transcript.language == (language or "ja")


@pytest.mark.parametrize(
    ("text", "voice", "keyword", "language"),
    [
        ("今日は晴れです。", "jf_alpha", "晴れ", "ja"),
        ("The weather is sunny today.", "en_US-joe-medium", "sunny", "en"),
        ("The weather is sunny today.", None, "sunny", "en"),  # no voice named: the script's default voice
    ],
)
async def test_synthesized_speech_says_the_text(
    base_url: str, text: str, voice: str | None, keyword: str, language: str
) -> None:
    received = await synthesize(text, voice)
    assert not received.errors, received.errors
    [utterance] = received.utterances
    assert (utterance.width, utterance.channels) == (2, 1)
    assert utterance.rate in (22050, 24000)  # the Piper and Kokoro voices' own rates
    low, high = SECONDS_PER_CHAR[language]
    assert low * len(text) < utterance.seconds < high * len(text)
    # What was said is the text: heard back through the door's own recogniser.
    heard = Transcript.from_event(await transcribe(utterance.as_16k(), language))
    assert keyword in heard.text.lower()


async def test_a_streamed_synthesis_speaks_each_sentence_as_soon_as_it_is_complete(base_url: str) -> None:
    pieces = ["It will be sunny today. And tomor", "row it will ", "rain in the afternoon."]
    received = await synthesize_streamed(pieces, "en_US-joe-medium")
    assert not received.errors, received.errors
    assert received.stopped
    # The first sentence was spoken before the rest of the text was sent; the rest after it, once (the plain
    # `synthesize` sent inside the stream for older servers is not spoken again).
    assert len(received.utterances) == 2
    first, second = received.utterances
    assert 0.5 < first.seconds < 4.0
    assert 0.8 < second.seconds < 6.0
    heard = Transcript.from_event(await transcribe(second.as_16k(), "en"))
    assert "rain" in heard.text.lower()


async def test_malformed_events_get_error_events_and_the_server_serves_on(base_url: str) -> None:
    # A field of the wrong type: an error naming it, and the connection stays usable.
    async with AsyncTcpClient(HOST, WYOMING_PORT) as client:
        await client.write_event(Event(type="synthesize", data={"text": 5}))
        error = await read(client)
        assert error is not None
        assert Error.is_type(error.type)
        assert Error.from_event(error).code == "INVALID_REQUEST"
        assert "text" in Error.from_event(error).text
        await client.write_event(Describe().event())
        info = await read(client)
        assert info is not None
        assert Info.is_type(info.type)

    # Bytes that are not an event, and an event announcing a 2 GB payload: an error, then the end of the
    # connection (the stream cannot be followed any more).
    huge = json.dumps({"type": "audio-chunk", "payload_length": 2**31}).encode() + b"\n"
    for garbage in (b"\xff\xfenot json\n", huge):
        reader, writer = await asyncio.open_connection(HOST, WYOMING_PORT)
        try:
            writer.write(garbage)
            await writer.drain()
            async with asyncio.timeout(30):
                header = json.loads(await reader.readline())
                body = json.loads(await reader.readexactly(header["data_length"]))
                assert header["type"] == "error"
                assert body["code"] == "INVALID_REQUEST"
                assert await reader.read() == b""  # closed by the server
        finally:
            writer.close()

    # A synthesize-chunk outside a stream, a synthesize-stop without a start: errors, nothing spoken.
    async with AsyncTcpClient(HOST, WYOMING_PORT) as client:
        await client.write_event(Event(type="synthesize-chunk", data={"text": "Hi."}))
        error = await read(client)
        assert error is not None
        assert Error.from_event(error).code == "INVALID_REQUEST"
    assert (await describe()).tts


async def test_an_oversize_audio_stream_is_refused_while_it_is_sent(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    limit_s = 60.0  # the default max_audio_seconds
    one_second = bytes(2 * 16000)
    async with AsyncTcpClient(HOST, WYOMING_PORT) as client:
        await client.write_event(Transcribe(language="en").event())
        await send_audio(client, one_second * int(limit_s + 5))
        received = await collect(client, "audio-stop")
    assert [Error.from_event(error).code for error in received.errors] == ["AUDIO_TOO_LONG"]
    assert received.ended or received.errors
    # The door (and the recogniser behind it) serve the next question as usual.
    wav, keyword = english_question
    event = await transcribe(pcm16k(wav), "en")
    assert keyword in Transcript.from_event(event).text.lower()


async def test_silence_is_an_empty_transcript_and_too_short_audio_an_error(base_url: str) -> None:
    silence = await transcribe(bytes(2 * 16000 * 2), "en")
    assert Transcript.is_type(silence.type)
    assert Transcript.from_event(silence).text == ""
    short = await transcribe(bytes(2 * 1600), "en")  # 0.1 s, under min_audio_seconds
    assert Error.from_event(short).code == "AUDIO_TOO_SHORT"


async def test_connections_beyond_the_limit_are_refused_with_an_error(base_url: str) -> None:
    limit = int(TEST_ARGS["wyoming_max_connections"])  # type: ignore[call-overload]
    held = [await asyncio.open_connection(HOST, WYOMING_PORT) for _ in range(limit)]
    try:
        await asyncio.sleep(0.5)  # accepted and counted
        reader, writer = await asyncio.open_connection(HOST, WYOMING_PORT)
        async with asyncio.timeout(30):
            header = json.loads(await reader.readline())
            body = json.loads(await reader.readexactly(header["data_length"]))
        writer.close()
        assert header["type"] == "error"
        assert body["code"] == "TOO_MANY_REQUESTS"
    finally:
        for _, held_writer in held:
            held_writer.close()
    await asyncio.sleep(0.5)
    assert (await describe()).asr


async def test_a_failing_stage_is_an_error_event_with_its_code_and_the_connection_serves_on(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    """A second ingress with its own door, on a recogniser and a synthesiser that raise."""
    for stage, code in (("stt", "STT_SERVICE_UNAVAILABLE"), ("tts", "TTS_SERVICE_UNAVAILABLE")):
        port = free_ports(1, exclude={WYOMING_PORT})[0]
        name = f"wyoming-faulty-{stage}"
        deploy_orchestrator(name, OrchestratorSettings(wyoming_port=port), faulty_stage=stage)
        try:
            async with AsyncTcpClient(HOST, port) as client:
                if stage == "stt":
                    await client.write_event(Transcribe(language="en").event())
                    await send_audio(client, pcm16k(english_question[0]))
                    received = await collect(client, "transcript")
                else:
                    await client.write_event(SynthesizeStart().event())
                    await client.write_event(SynthesizeChunk(text="It is sunny. It is warm.").event())
                    await client.write_event(SynthesizeStop().event())
                    received = await collect(client, "synthesize-stopped")
                    assert received.stopped  # after the error: a client waiting for it is not left hanging
                assert [Error.from_event(error).code for error in received.errors] == [code]
                assert "injected" not in Error.from_event(received.errors[0]).text  # the engine's words: logs
                await client.write_event(Describe().event())  # the connection still serves
                assert Info.is_type((await read(client) or Event("none")).type)
        finally:
            serve.delete(name)


async def test_a_stalled_client_is_closed_after_the_idle_timeout(base_url: str) -> None:
    """Half an event header, then nothing: the connection is closed (its slot freed), not held forever."""
    port = free_ports(1, exclude={WYOMING_PORT})[0]
    name = "wyoming-idle"
    settings = OrchestratorSettings(
        wyoming_port=port, wyoming_idle_timeout_seconds=1.0, wyoming_max_connections=1
    )
    deploy_orchestrator(name, settings)
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b'{"type": "descr')
        await writer.drain()
        async with asyncio.timeout(15):
            assert await reader.read() == b""  # closed by the server
        writer.close()
        # Its slot is free again: the only one (wyoming_max_connections=1) serves the next client.
        assert (await describe(port)).asr
    finally:
        serve.delete(name)


async def test_a_stream_refused_for_want_of_a_slot_is_one_error_then_synthesize_stopped(
    base_url: str,
) -> None:
    """One dialogue slot, held by a stream: a second stream is refused once (429), its text is not spoken,
    and its synthesize-stop is still answered, as Home Assistant waits for it."""
    port = free_ports(1, exclude={WYOMING_PORT})[0]
    name = "wyoming-one-slot"
    deploy_orchestrator(name, OrchestratorSettings(wyoming_port=port, max_concurrent_dialogues=1))
    try:
        async with AsyncTcpClient(HOST, port) as holder, AsyncTcpClient(HOST, port) as refused:
            await holder.write_event(SynthesizeStart().event())
            await holder.write_event(Describe().event())  # answered once the start (and its slot) is in
            assert Info.is_type((await read(holder) or Event("none")).type)
            await refused.write_event(SynthesizeStart().event())
            await refused.write_event(SynthesizeChunk(text="It is sunny. It is warm.").event())
            await refused.write_event(Synthesize(text="It is sunny. It is warm.").event())
            await refused.write_event(SynthesizeStop().event())
            received = await collect(refused, "synthesize-stopped")
            assert [Error.from_event(error).code for error in received.errors] == ["TOO_MANY_REQUESTS"]
            assert received.stopped
            assert not received.utterances
            # The holder's stream is spoken as usual.
            await holder.write_event(SynthesizeChunk(text="It is sunny.").event())
            await holder.write_event(SynthesizeStop().event())
            spoken = await collect(holder, "synthesize-stopped")
            assert not spoken.errors
            assert len(spoken.utterances) == 1
    finally:
        serve.delete(name)
