"""`POST /v1/audio/transcriptions` and `/v1/audio/translations`: the upload decoded and checked as the
dialogue routes do (bad audio 400, too short/long 400, silence 422), recognised by the SpeechToText stage (a
translation: Whisper's translate task, English text whatever the speech's language), answered in the asked
`response_format` (json, text, verbose_json, srt, vtt) or, for a transcription with `stream=true`, as
`transcript.text.delta` / `transcript.text.done` events.

verbose_json, srt and vtt carry the recogniser's timed segments (Whisper's timestamps, mapped back through
the speech VAD kept to the upload's time); an engine that gives none yields one segment spanning the clip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from voice_orchestrator.api.openai.gateway import SSE_HEADERS, OpenAIGateway, Visit, sse_data
from voice_orchestrator.api.openai.protocol import (
    DurationUsage,
    TranscriptionForm,
    TranscriptionResult,
    TranscriptionSegment,
    TranscriptTextDelta,
    TranscriptTextDone,
    TranslationForm,
    VerboseTranscription,
)
from voice_orchestrator.api.uploads import UploadLimits, read_form
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import DecodedAudio, SpeechSegment, SpeechTask, Transcription
from voice_orchestrator.turn import normalize_language

# Form fields OpenAI's clients may send; `name[]` is how they send lists.
_LIST_FIELDS = {"timestamp_granularities[]": "timestamp_granularities"}
_IGNORED_FIELDS = {"include[]", "chunking_strategy", "known_speaker_names[]", "known_speaker_references[]"}
FormT = TypeVar("FormT", bound=TranslationForm)


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


def parse_form(form: FormData, fields_model: type[FormT]) -> tuple[FormT, UploadFile | None]:
    """The form's fields as `fields_model` (a bad one is a 400 naming it) and its file."""
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
        checked = fields_model.model_validate(fields)
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
    def __init__(self, gateway: OpenAIGateway) -> None:
        self._gateway = gateway

    async def _read(self, request: Request, fields_model: type[FormT]) -> tuple[FormT, bytes]:
        """The form through the gate (an upload, not yet a dialogue), its fields checked."""

        async def read(limited: Request, limits: UploadLimits) -> tuple[FormT, bytes]:
            form = await read_form(limited, limits, "file", max_fields=16)
            fields, upload = parse_form(form, fields_model)
            if upload is None:
                raise OrchestratorError(
                    OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
                    "The request has no file field named 'file'.",
                    details={"field": "file"},
                )
            return fields, await upload.read()

        return await self._gateway.gate.read(request, read)

    async def transcribe(self, request: Request, visit: Visit) -> Response:
        fields, data = await self._read(request, TranscriptionForm)
        try:
            language = normalize_language(fields.language)
        except OrchestratorError as error:
            raise OrchestratorError(error.code, error.message, details={"field": "language"}) from None
        audio, heard = await self._recognise(visit, fields, data, language, "transcribe")
        if fields.stream:
            events = self._events(heard.text)
            return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
        return self._answer(fields, audio, heard, language or heard.language, "transcribe")

    async def translate(self, request: Request, visit: Visit) -> Response:
        fields, data = await self._read(request, TranslationForm)
        audio, heard = await self._recognise(visit, fields, data, None, "translate")
        return self._answer(fields, audio, heard, "en", "translate")  # OpenAI: the output's language

    async def _recognise(
        self, visit: Visit, fields: TranslationForm, data: bytes, language: str | None, task: SpeechTask
    ) -> tuple[DecodedAudio, Transcription]:
        """Decoded and recognised as the dialogue does it (bad audio 400, too short or long 400, no speech
        422), in a dialogue slot."""
        (await self._gateway.catalog()).resolve(fields.model, "stt")
        visit.admit()
        core = self._gateway.core
        audio = await core.decode(data)
        heard, _ = await core.hear(audio, language, task)
        return audio, heard

    @staticmethod
    def _answer(
        fields: TranslationForm, audio: DecodedAudio, heard: Transcription, language: str, task: SpeechTask
    ) -> Response:
        duration = round(audio.duration_s, 3)
        usage = DurationUsage(seconds=duration)
        if fields.response_format == "json":
            return JSONResponse(TranscriptionResult(text=heard.text, usage=usage).model_dump())
        if fields.response_format == "text":
            return PlainTextResponse(heard.text + "\n")
        timed = heard.segments or [SpeechSegment(start=0.0, end=duration, text=heard.text)]
        segments = [
            TranscriptionSegment(id=index, start=piece.start, end=piece.end, text=piece.text)
            for index, piece in enumerate(timed)
        ]
        if fields.response_format == "verbose_json":
            verbose = VerboseTranscription(
                task=task,
                language=language,
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
