"""The command-line client without a server: event parsing, header decoding, WAV joining, and whole runs of
`main` over httpx's MockTransport."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from voice_orchestrator import client
from voice_orchestrator.audio import encode_wav_pcm16
from voice_orchestrator.client import (
    NdjsonDecoder,
    ProtocolError,
    error_body,
    iter_events,
    join_wavs,
    output_paths,
    parse_event,
    read_text_header,
    timing_headers,
    wav_info,
)
from voice_orchestrator.protocol import (
    StreamAudioEvent,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamTranscriptEvent,
)
from voice_orchestrator.text import header_text as server_header_text


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return encode_wav_pcm16((0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32), rate)


TRANSCRIPT = {
    "type": "transcript",
    "request_id": "r1",
    "session_id": "s1",
    "text": "今日の天気は",
    "language": "ja",
    "input_duration_s": 1.5,
    "stt_ms": 812.5,
}


def audio_event(index: int, text: str, wav: bytes) -> dict[str, Any]:
    info = wav_info(wav)
    return {
        "type": "audio",
        "index": index,
        "text": text,
        "sample_rate": info.sample_rate,
        "duration_s": info.duration_s,
        "audio": base64.b64encode(wav).decode("ascii"),
    }


DONE = {
    "type": "done",
    "metadata": {
        "request_id": "r1",
        "input_text": "今日の天気は",
        "input_language": "ja",
        "input_duration_s": 1.5,
        "output_text": "晴れです。暑いです。",
        "output_duration_s": 1.5,
        "output_sample_rate": 24000,
        "stt_ms": 812.5,
        "llm_ms": 300.0,
        "tts_ms": 200.0,
        "total_ms": 1400.0,
        "time_to_first_audio_ms": 1200.0,
        "sentences": 2,
    },
}
ERROR = {
    "error_code": "TTS_SERVICE_UNAVAILABLE",
    "message": "The text-to-speech service is unavailable.",
    "details": None,
    "retry_after": 5,
    "request_id": "r1",
}


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(event, ensure_ascii=False).encode() + b"\n" for event in events)


# ---------------------------------------------------------------- events


def test_each_event_type_parses_to_its_model() -> None:
    wav = tone(0.1, 24000)
    assert isinstance(parse_event(json.dumps(TRANSCRIPT)), StreamTranscriptEvent)
    audio = parse_event(json.dumps(audio_event(0, "晴れです。", wav)))
    assert isinstance(audio, StreamAudioEvent)
    assert base64.b64decode(audio.audio) == wav
    done = parse_event(json.dumps(DONE).encode())
    assert isinstance(done, StreamDoneEvent)
    assert done.metadata.time_to_first_audio_ms == 1200.0
    error = parse_event(json.dumps({"type": "error", **ERROR}))
    assert isinstance(error, StreamErrorEvent)
    assert error.error_code == "TTS_SERVICE_UNAVAILABLE"
    assert error.retry_after == 5


@pytest.mark.parametrize(
    "line",
    ["not json", "{}", '{"type": "surprise"}', '{"type": "audio", "index": 0}', "[1, 2]"],
)
def test_a_line_outside_the_contract_is_a_protocol_error(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_event(line)


def test_events_survive_any_chunking_even_inside_a_utf8_character() -> None:
    body = ndjson(TRANSCRIPT, audio_event(0, "晴れです。", tone(0.05, 24000)), DONE)
    whole = list(iter_events([body]))
    assert [event.type for event in whole] == ["transcript", "audio", "done"]
    for size in (1, 2, 3, 7, 64):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        assert list(iter_events(chunks)) == whole


def test_blank_lines_are_skipped_and_a_last_line_needs_no_newline() -> None:
    body = b"\n\r\n" + ndjson(TRANSCRIPT) + b"  \n" + json.dumps(DONE).encode()
    assert [event.type for event in iter_events([body])] == ["transcript", "done"]


def test_a_stream_cut_inside_a_character_is_a_protocol_error() -> None:
    decoder = NdjsonDecoder()
    assert decoder.feed(ndjson(TRANSCRIPT)[:-1] + "天".encode()[:2]) == []
    with pytest.raises(ProtocolError):
        decoder.close()


# ---------------------------------------------------------------- headers and error bodies


def test_percent_encoded_headers_decode_to_what_the_server_encoded() -> None:
    for text in ["今日の天気は？", "What's 3.5% of 100?", "「東京」 & ümlaut", ""]:
        assert read_text_header({"X-Input-Text": server_header_text(text)}, "X-Input-Text") == text
    assert read_text_header({}, "X-Input-Text") is None
    assert read_text_header(httpx.Headers({"x-output-text": "%E6%99%B4"}), "X-Output-Text") == "晴"


def test_timing_headers_are_milliseconds_and_skip_absent_or_malformed_ones() -> None:
    headers = httpx.Headers(
        {
            "X-Processing-Time-Total": "3525.4",
            "X-Processing-Time-STT": "2469.8",
            "X-Processing-Time-LLM": "n/a",
        }
    )
    assert timing_headers(headers) == {"total_ms": 3525.4, "stt_ms": 2469.8}
    assert client.format_timings(timing_headers(headers)) == "STT 2470 ms  total 3525 ms"


def test_error_bodies_are_typed_and_a_foreign_one_becomes_http_status() -> None:
    body = error_body(503, json.dumps(ERROR).encode(), {"Retry-After": "5"})
    assert (body.error_code, body.retry_after, body.request_id) == ("TTS_SERVICE_UNAVAILABLE", 5, "r1")
    proxy = error_body(502, b"<html>Bad Gateway</html>", httpx.Headers({"Retry-After": "7"}))
    assert proxy.error_code == "HTTP_502"
    assert proxy.message == "<html>Bad Gateway</html>"
    assert proxy.retry_after == 7
    assert proxy.request_id == "unknown"


# ---------------------------------------------------------------- WAV joining


def test_sentences_of_one_format_join_into_one_wav() -> None:
    parts = [tone(0.5, 24000), tone(0.25, 24000), tone(0.125, 24000)]
    [joined] = join_wavs(parts)
    info = wav_info(joined)
    assert (info.channels, info.sample_width, info.sample_rate) == (1, 2, 24000)
    assert info.frames == sum(wav_info(part).frames for part in parts)
    with wave.open(io.BytesIO(joined)) as wav:
        frames = wav.readframes(info.frames)
    assert frames == b"".join(part[44:] for part in parts)  # the PCM of each part, back to back


def test_sentences_of_different_rates_are_kept_apart_not_resampled() -> None:
    parts = [tone(0.1, 24000), tone(0.1, 22050)]
    assert join_wavs(parts) == parts
    assert join_wavs(parts[:1]) == parts[:1]
    assert join_wavs([]) == []


def test_a_non_wav_part_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        join_wavs([tone(0.1, 24000), b"OggS not a wav"])


def test_output_paths_number_the_files_only_when_there_are_several(tmp_path: Path) -> None:
    assert output_paths(tmp_path / "reply.wav", 1) == [tmp_path / "reply.wav"]
    assert output_paths(tmp_path / "reply.wav", 2) == [tmp_path / "reply-0.wav", tmp_path / "reply-1.wav"]


def test_the_player_is_found_in_order_or_reported_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {"ffplay", "afplay"}
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}" if name in found else None)
    command = client.player_command()
    assert command is not None
    assert command[0][0] == "ffplay"
    assert command[1] is True
    found.clear()
    assert client.player_command() is None
    warnings: list[str] = []
    assert client.make_player(warnings.append) is None
    assert "no audio player" in warnings[0]


# ---------------------------------------------------------------- whole runs over a mock transport


Handler = Callable[[httpx.Request], httpx.Response]


def run(handler: Handler, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    question = tmp_path / "question.wav"
    question.write_bytes(tone(1.0, 16000))
    out, err = io.StringIO(), io.StringIO()
    transport = httpx.MockTransport(handler)
    argv = [str(question), "-o", str(tmp_path / "reply.wav"), "--url", "http://server", *args]
    code = client.main(argv, out=out, err=err, transport=transport)
    return code, out.getvalue(), err.getvalue()


def form_fields(request: httpx.Request) -> str:
    return request.read().decode("utf-8", errors="replace")


def test_dialogue_saves_the_wav_and_prints_decoded_headers(tmp_path: Path) -> None:
    reply = tone(0.8, 24000)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {
            "Content-Type": "audio/wav",
            "X-Input-Text": server_header_text("今日の天気は"),
            "X-Output-Text": server_header_text("晴れです。"),
            "X-Input-Language": "ja",
            "X-Output-Duration": "0.8",
            "X-Output-Sample-Rate": "24000",
            "X-Processing-Time-Total": "1400.0",
            "X-Processing-Time-STT": "812.5",
            "X-Processing-Time-LLM": "300.0",
            "X-Processing-Time-TTS": "200.0",
            "X-Request-ID": "r1",
            "X-Session-ID": "talk-1",
        }
        return httpx.Response(200, content=reply, headers=headers)

    code, out, err = run(
        handler, tmp_path, "--language", "ja", "--session", "talk-1", "--api-key", "k3y", "--voice", "jm_kumo"
    )
    assert (code, err) == (0, "")
    assert (tmp_path / "reply.wav").read_bytes() == reply
    assert "you said (ja): 今日の天気は" in out
    assert "reply: 晴れです。" in out
    assert "STT 812 ms  LLM 300 ms  TTS 200 ms  total 1400 ms" in out
    assert "session: talk-1" in out
    [request] = seen
    assert request.url.path == "/api/orchestrator/dialogue"
    assert request.headers["Authorization"] == "Bearer k3y"
    body = form_fields(request)
    assert 'name="language"' in body
    assert 'name="session_id"' in body
    assert 'name="voice"\r\n\r\njm_kumo' in body
    assert 'name="audio"; filename="question.wav"' in body


def test_auto_language_and_no_key_send_nothing_extra(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=tone(0.1, 24000))

    assert run(handler, tmp_path, "--language", "auto")[0] == 0
    assert "authorization" not in seen[0].headers
    assert 'name="language"' not in form_fields(seen[0])


def streamed(chunks: list[bytes], headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/orchestrator/dialogue/stream"
        return httpx.Response(
            200, content=iter(chunks), headers={"Content-Type": "application/x-ndjson", **(headers or {})}
        )

    return handler


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def test_stream_prints_sentences_as_they_come_and_joins_their_audio(tmp_path: Path) -> None:
    first, second = tone(0.5, 24000), tone(0.25, 24000)
    body = ndjson(TRANSCRIPT, audio_event(0, "晴れです。", first), audio_event(1, "暑いです。", second), DONE)
    code, out, err = run(streamed(chunked(body, 1000), {"X-Session-ID": "s1"}), tmp_path, "--stream")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "you said (ja, 1.50 s): 今日の天気は" in lines[0]
    assert "sentence 0 (0.50 s): 晴れです。" in lines[1]
    assert "sentence 1 (0.25 s): 暑いです。" in lines[2]
    assert "time to first audio: server 1200 ms" in out
    assert "STT 812 ms  LLM 300 ms  TTS 200 ms  total 1400 ms  (2 sentences)" in out
    assert "session: s1" in out
    assert wav_info((tmp_path / "reply.wav").read_bytes()).frames == 12000 + 6000


def test_stream_of_mixed_rates_writes_one_file_per_sentence(tmp_path: Path) -> None:
    body = ndjson(
        TRANSCRIPT, audio_event(0, "Hi.", tone(0.1, 22050)), audio_event(1, "晴れ。", tone(0.1, 24000)), DONE
    )
    assert run(streamed([body]), tmp_path, "--stream")[0] == 0
    assert not (tmp_path / "reply.wav").exists()
    assert wav_info((tmp_path / "reply-0.wav").read_bytes()).sample_rate == 22050
    assert wav_info((tmp_path / "reply-1.wav").read_bytes()).sample_rate == 24000


def test_an_error_event_exits_non_zero_and_keeps_the_audio_already_spoken(tmp_path: Path) -> None:
    body = ndjson(TRANSCRIPT, audio_event(0, "晴れです。", tone(0.5, 24000)), {"type": "error", **ERROR})
    code, out, err = run(streamed([body]), tmp_path, "--stream")
    assert code == client.EXIT_SERVER_ERROR
    assert "error: TTS_SERVICE_UNAVAILABLE: The text-to-speech service is unavailable." in err
    assert "retry after 5 s" in err
    assert "sentence 0" in out
    assert wav_info((tmp_path / "reply.wav").read_bytes()).frames == 12000


def test_a_stream_without_done_is_a_protocol_failure(tmp_path: Path) -> None:
    code, _, err = run(streamed([ndjson(TRANSCRIPT)]), tmp_path, "--stream")
    assert code == client.EXIT_CONNECTION
    assert "without a 'done' or 'error' event" in err


@pytest.mark.parametrize("stream", [False, True])
def test_json_errors_print_code_and_message(tmp_path: Path, stream: bool) -> None:
    too_short = {
        **ERROR,
        "error_code": "AUDIO_TOO_SHORT",
        "message": "The audio is too short.",
        "retry_after": None,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=too_short, headers={"X-Request-ID": "r1"})

    code, _, err = run(handler, tmp_path, *(["--stream"] if stream else []))
    assert code == client.EXIT_SERVER_ERROR
    assert err.startswith("error: AUDIO_TOO_SHORT: The audio is too short. (HTTP 400, request r1")
    assert not (tmp_path / "reply.wav").exists()


def test_connection_errors_exit_with_their_own_code(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    code, _, err = run(refuse, tmp_path)
    assert code == client.EXIT_CONNECTION
    assert "cannot reach http://server" in err


def test_an_unreadable_question_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    assert client.main([str(tmp_path / "missing.wav")], err=err) == client.EXIT_USAGE
    assert "cannot read" in err.getvalue()


def test_the_player_plays_queued_wavs_in_order_and_survives_a_failing_player(tmp_path: Path) -> None:
    sink = tmp_path / "played"
    parts = [tone(0.05, 24000), tone(0.1, 24000), tone(0.02, 22050)]
    warnings: list[str] = []
    player = client.Player(["sh", "-c", f"cat >> {sink}"], True, warnings.append)
    for part in parts:
        player.play(part)
    player.finish()
    assert sink.read_bytes() == b"".join(parts)
    assert warnings == []

    broken = client.Player(["sh", "-c", "echo no sound card >&2; exit 1"], True, warnings.append)
    for part in parts:
        broken.play(part)
    broken.finish()  # returns although the player failed
    assert warnings == ["--play: sh failed: no sound card"]
