"""OpenAPI metadata of the `/v1` routes. Their errors are OpenAI's shape (`OpenAIErrorResponse`), with the
statuses of the one error table; request bodies are the protocol's models (added to the document's components
by `voice_orchestrator.api.docs.complete_document`)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from voice_orchestrator.api.errors import ROUTE_ERRORS, openapi_error_responses
from voice_orchestrator.api.openai.chat_protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
)
from voice_orchestrator.api.openai.protocol import (
    ModelCard,
    ModelList,
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechRequest,
    TranscriptionForm,
    TranscriptionResult,
    TranscriptTextDelta,
    TranscriptTextDone,
    TranslationForm,
    VerboseTranscription,
    VoiceList,
)
from voice_orchestrator.errors import OrchestratorErrorCode


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIErrorResponse(BaseModel):
    """Every error of a /v1 route: `code` is the error code of the API's one table."""

    error: OpenAIError


# Models referenced by the /v1 routes' documentation but not declared as a response_model.
DOCUMENTED_MODELS: tuple[type[BaseModel], ...] = (
    SpeechRequest,
    SpeechAudioDelta,
    SpeechAudioDone,
    OpenAIErrorResponse,
    TranscriptionResult,
    VerboseTranscription,
    TranscriptTextDelta,
    TranscriptTextDone,
    ChatCompletionRequest,
    ChatCompletion,
    ChatCompletionChunk,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openai_error_responses(*codes: OrchestratorErrorCode) -> dict[int | str, dict[str, Any]]:
    body = {"content": {"application/json": {"schema": _ref(OpenAIErrorResponse)}}}
    return openapi_error_responses(*codes, body=body)


# Listing the models asks each stage which model it runs (once): a stage that cannot answer is a 503.
_CATALOG = (
    *ROUTE_ERRORS,
    OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE,
    OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE,
    OrchestratorErrorCode.TTS_SERVICE_UNAVAILABLE,
    OrchestratorErrorCode.SERVICE_UNAVAILABLE,
)
_MODEL_RUN = (
    *_CATALOG,
    OrchestratorErrorCode.MODEL_NOT_FOUND,
    OrchestratorErrorCode.TOO_MANY_REQUESTS,
    OrchestratorErrorCode.PROCESSING_TIMEOUT,
)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(model)}}}}


MODELS_DOCS: dict[str, Any] = {
    "summary": "The loaded models (speech-to-text, language model, text-to-speech, the spoken dialogue)",
    "response_model": ModelList,
    "responses": openai_error_responses(*_CATALOG),
}
MODEL_DOCS: dict[str, Any] = {
    "summary": "One model, by id or by a well-known OpenAI alias (whisper-1, tts-1, gpt-4o-mini, ...)",
    "response_model": ModelCard,
    "responses": openai_error_responses(*_CATALOG, OrchestratorErrorCode.MODEL_NOT_FOUND),
}
VOICES_DOCS: dict[str, Any] = {
    "summary": "The text-to-speech voices and the languages each speaks",
    "response_model": VoiceList,
    "responses": openai_error_responses(*_CATALOG),
}
_AUDIO = {"schema": {"type": "string", "format": "binary"}}
SPEECH_DOCS: dict[str, Any] = {
    "summary": "Text to speech, streamed sentence by sentence (OpenAI's audio.speech)",
    "description": "`response_format` mp3, opus (Ogg), aac (ADTS), flac, wav or pcm (16-bit little-endian "
    "mono), all 24 kHz mono; every format streams as each sentence is synthesised (`wav` with a header of "
    "unknown length, 0xFFFFFFFF, as streamed WAV is sent). "
    "`stream_format: sse` sends `speech.audio.delta` events (base64 of the format's bytes) and a "
    "`speech.audio.done`. `voice`: "
    "a voice of GET /v1/audio/voices (it must speak the text's language: Japanese text with an English-only "
    "voice is a 400) or an OpenAI voice name (alloy, ...), which picks the default voice of the text's "
    "language. `input` is at most `max_speech_input_chars` characters.",
    "response_class": StreamingResponse,
    "responses": {
        200: {
            "description": "The speech in the asked format, or server-sent events",
            "content": {
                **{media: _AUDIO for media in ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac")},
                **{media: _AUDIO for media in ("audio/wav", "audio/pcm")},
                "text/event-stream": {
                    "schema": {"oneOf": [_ref(SpeechAudioDelta), _ref(SpeechAudioDone)]},
                },
            },
        },
        **openai_error_responses(*_MODEL_RUN),
    },
    "openapi_extra": _json_body(SpeechRequest),
}

_TEXT = {"schema": {"type": "string"}}
_FILE = {
    "type": "string",
    "format": "binary",
    "description": "WAV, FLAC, OGG, MP3, WebM or M4A; decided from the bytes",
}


def _form_body(form: type[BaseModel]) -> dict[str, Any]:
    """A multipart body: the `file` and the fields of `form` (a list field is sent as `name[]`)."""
    schema = form.model_json_schema()
    properties = {
        f"{name}[]" if field.get("type") == "array" else name: field
        for name, field in schema["properties"].items()
    }
    body = {
        "type": "object",
        "required": ["file", *schema.get("required", [])],
        "properties": {"file": _FILE, **properties},
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}}}


def _recognition_docs(summary: str, description: str, form: type[BaseModel], streams: bool) -> dict[str, Any]:
    content: dict[str, Any] = {
        "application/json": {"schema": {"oneOf": [_ref(TranscriptionResult), _ref(VerboseTranscription)]}},
        "text/plain": _TEXT,
        "application/x-subrip": _TEXT,
        "text/vtt": _TEXT,
    }
    if streams:
        content["text/event-stream"] = {
            "schema": {"oneOf": [_ref(TranscriptTextDelta), _ref(TranscriptTextDone)]}
        }
    return {
        "summary": summary,
        "description": "The same decoding and limits as the dialogue routes: undecodable audio is a 400 "
        "INVALID_AUDIO_FORMAT, too short or too long a 400, no speech a 422. `prompt` and `temperature` are "
        "accepted and ignored (greedy decoding). verbose_json, srt and vtt hold Whisper's timed segments "
        f"(seconds from the start of the upload). {description}",
        "response_class": Response,
        "responses": {
            200: {
                "description": "The text in the asked response_format"
                + (", or server-sent events" if streams else ""),
                "content": content,
            },
            **openai_error_responses(
                *_MODEL_RUN,
                OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
                OrchestratorErrorCode.AUDIO_TOO_SHORT,
                OrchestratorErrorCode.AUDIO_TOO_LONG,
                OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED,
            ),
        },
        "openapi_extra": _form_body(form),
    }


TRANSCRIPTION_DOCS = _recognition_docs(
    "Speech to text (OpenAI's audio.transcriptions)",
    "`stream=true` answers `transcript.text.delta` and `transcript.text.done` events.",
    TranscriptionForm,
    streams=True,
)
TRANSLATION_DOCS = _recognition_docs(
    "Speech in any language to English text (OpenAI's audio.translations; Whisper's translate task)",
    "verbose_json's `language` is the output's (en), as OpenAI answers.",
    TranslationForm,
    streams=False,
)

CHAT_DOCS: dict[str, Any] = {
    "summary": "Chat completion, text and speech (OpenAI's chat.completions)",
    "description": "The messages as written (system/developer, user, assistant; text content) go to the "
    "language model of the request's language: the model id's, else the script of the last user message "
    "(kana or kanji: Japanese). `max_tokens`/`max_completion_tokens` up to `max_chat_tokens` (also the "
    "default), `temperature`, `stop` (up to 4). `stream: true` sends `chat.completion.chunk` events and "
    "`data: [DONE]`; `stream_options.include_usage` adds a last chunk with the usage. Usage counts tokens "
    "with the answering model's tokenizer. Audio: user content parts of type `input_audio` (base64) are "
    'transcribed first (the dialogue\'s decoding and errors), and `modalities: ["text", "audio"]` with '
    "`audio: {voice, format}` returns the reply spoken in `message.audio` (streamed: pcm16, a sentence per "
    "`delta.audio`). The spoken "
    "dialogue's ids (`voice-dialogue`, `gpt-4o-audio-preview`) are accepted as models here.",
    "response_class": Response,
    "responses": {
        200: {
            "description": "The completion, or server-sent chunks",
            "content": {
                "application/json": {"schema": _ref(ChatCompletion)},
                "text/event-stream": {"schema": _ref(ChatCompletionChunk)},
            },
        },
        **openai_error_responses(
            *_MODEL_RUN,
            OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
            OrchestratorErrorCode.AUDIO_TOO_SHORT,
            OrchestratorErrorCode.AUDIO_TOO_LONG,
            OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED,
            OrchestratorErrorCode.CONTEXT_LENGTH_EXCEEDED,
        ),
    },
    "openapi_extra": _json_body(ChatCompletionRequest),
}
