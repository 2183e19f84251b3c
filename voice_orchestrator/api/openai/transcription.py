"""`POST /v1/audio/transcriptions`: the upload decoded and checked as the dialogue routes do (bad audio 400,
too short/long 400, silence 422), recognised by the SpeechToText stage, answered in the asked
`response_format` (json, text, verbose_json, srt, vtt) or, with `stream=true`, as `transcript.text.delta` /
`transcript.text.done` events.

The recogniser returns the text without timestamps for now, so verbose_json, srt and vtt carry one segment
spanning the whole clip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from voice_orchestrator.api.openai.gateway import SSE_HEADERS, OpenAIGateway, sse_data
from voice_orchestrator.api.openai.protocol import (
    DurationUsage,
    TranscriptionForm,
    TranscriptionResult,
    TranscriptionSegment,
    TranscriptTextDelta,
    TranscriptTextDone,
    VerboseTranscription,
)
from voice_orchestrator.api.uploads import UploadLimits, limited_request
from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.pipeline import normalize_language
from voice_orchestrator.protocol import DecodedAudio, Transcription
from voice_orchestrator.stages import SpeechToTextStage

# Form fields OpenAI's clients may send; `name[]` is how they send lists.
_LIST_FIELDS = {"timestamp_granularities[]": "timestamp_granularities"}
_IGNORED_FIELDS = {"include[]", "chunking_strategy", "known_speaker_names[]", "known_speaker_references[]"}


def timestamp(seconds: float, separator: str) -> str:
    """`HH:MM:SS,mmm` (SubRip) or `HH:MM:SS.mmm` (WebVTT)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(segments: list[TranscriptionSegment], kind: str) -> str:
    """The segments as an SRT or a WebVTT file."""
    if kind == "srt":
        cues = [
            f"{index}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text}\n"
            for index, s in enumerate(segments, start=1)
        ]
        return "\n".join(cues)
    cues = [f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def parse_form(form: FormData) -> tuple[TranscriptionForm, UploadFile | None]:
    """The form's fields as `TranscriptionForm` (a bad one is a 400 naming it) and its file."""
    fields: dict[str, Any] = {}
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name == "file":
                upload = value
            continue
        if name in _LIST_FIELDS:
            fields.setdefault(_LIST_FIELDS[name], []).append(value)
        elif name not in _IGNORED_FIELDS:
            fields[name] = value
    try:
        checked = TranscriptionForm.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            f"The form field {field!r} is invalid: {first['msg']}.",
            details={"field": field},
        ) from None
    return checked, upload


class TranscriptionService:
    def __init__(self, gateway: OpenAIGateway, stt: SpeechToTextStage) -> None:
        self._gateway = gateway
        self._stt = stt

    async def _read(self, request: Request) -> tuple[TranscriptionForm, bytes]:
        limited = limited_request(request, UploadLimits.of(self._gateway.settings))
        try:
            form = await limited.form(max_files=1, max_fields=16)
        except OrchestratorError:
            raise
        except Exception as error:  # malformed multipart, wrong content type, too many parts
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
                "Send the audio as multipart/form-data with a file field named 'file'.",
                details={"field": "file", "reason": str(error)[:200] or type(error).__name__},
            ) from None
        fields, upload = parse_form(form)
        if upload is None:
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
                "The request has no file field named 'file'.",
                details={"field": "file"},
            )
        return fields, await upload.read()

    async def transcribe(self, request: Request, request_id: str) -> Response:
        fields, data = await self._read(request)
        (await self._gateway.catalog()).resolve(fields.model, "stt")
        try:
            language = normalize_language(fields.language)
        except OrchestratorError as error:
            raise OrchestratorError(error.code, error.message, details={"field": "language"}) from None
        settings = self._gateway.settings
        limits = AudioLimits(settings.min_audio_seconds, settings.max_audio_seconds)
        audio = await asyncio.to_thread(decode_audio, data, limits)
        heard = await self._gateway.call_stage("stt", self._stt.transcribe(audio, language))
        text = heard.text.strip()
        if not text:
            raise OrchestratorError(
                OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED,
                "No speech was recognised in the audio.",
                details={"input_duration_s": round(audio.duration_s, 3)},
            )
        if fields.stream:
            return StreamingResponse(self._events(text), media_type="text/event-stream", headers=SSE_HEADERS)
        return self._answer(fields, audio, heard.model_copy(update={"text": text}), language)

    @staticmethod
    def _answer(
        fields: TranscriptionForm, audio: DecodedAudio, heard: Transcription, forced: str | None
    ) -> Response:
        duration = round(audio.duration_s, 3)
        usage = DurationUsage(seconds=duration)
        if fields.response_format == "json":
            return JSONResponse(TranscriptionResult(text=heard.text, usage=usage).model_dump())
        if fields.response_format == "text":
            return PlainTextResponse(heard.text + "\n")
        segments = [TranscriptionSegment(id=0, start=0.0, end=duration, text=heard.text)]
        if fields.response_format == "verbose_json":
            verbose = VerboseTranscription(
                language=forced or heard.language,
                duration=duration,
                text=heard.text,
                segments=segments,
                usage=usage,
            )
            return JSONResponse(verbose.model_dump())
        media = "application/x-subrip" if fields.response_format == "srt" else "text/vtt"
        return PlainTextResponse(subtitles(segments, fields.response_format), media_type=media)

    @staticmethod
    async def _events(text: str) -> AsyncIterator[bytes]:
        yield sse_data(TranscriptTextDelta(delta=text))
        yield sse_data(TranscriptTextDone(text=text))
