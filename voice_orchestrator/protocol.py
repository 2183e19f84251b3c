"""Pydantic models for every payload: between deployments, in responses and in error bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

FloatArray = npt.NDArray[np.float32]


class _ArrayModel(BaseModel):
    # numpy arrays cross Ray as-is (pickle-5 zero copy) instead of being re-encoded at every hop.
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class DecodedAudio(_ArrayModel):
    """Speech ready for recognition: mono float32 in [-1, 1] at 16 kHz."""

    samples: FloatArray
    sample_rate: int = 16_000
    source_format: str
    source_sample_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


# What Whisper does with the speech: write it down in its language, or translate it into English.
SpeechTask = Literal["transcribe", "translate"]


class SpeechSegment(BaseModel):
    """A timed piece of a transcription: seconds from the start of the upload."""

    start: float
    end: float
    text: str


class Transcription(BaseModel):
    text: str
    language: str  # of the speech (also when the text is its English translation)
    segments: list[SpeechSegment] = Field(default_factory=list)  # empty: the engine gave no times


class Turn(BaseModel):
    """One earlier exchange of a conversation."""

    user: str
    assistant: str


class ChatMessage(BaseModel):
    """One message of a conversation written by an API client (the OpenAI chat route)."""

    role: Literal["system", "user", "assistant"]
    content: str


class ReplyRequest(BaseModel):
    text: str
    language: str
    # Earlier turns of the same session, oldest first (empty without a session).
    history: list[Turn] = Field(default_factory=list)
    # The OpenAI chat route: the whole conversation as the client wrote it (its own system prompt, if any),
    # instead of `text` + `history` + our prompt; and per-request bounds. None = the engine's settings (the
    # dialogue routes set none of these).
    messages: list[ChatMessage] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: list[str] = Field(default_factory=list)


class TokenUsage(BaseModel):
    """Tokens of one reply, counted by the model that wrote it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Reply(BaseModel):
    text: str
    language: str
    completion_tokens: int = 0


class SynthesisRequest(BaseModel):
    text: str
    language: str
    # A voice of the engine (a Kokoro voice, a Coqui speaker); None = the configured one.
    voice: str | None = None


class SpeechAudio(_ArrayModel):
    """Synthesised speech: mono float32 in [-1, 1] at the voice's own rate."""

    samples: FloatArray
    sample_rate: int
    voice: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class ProcessingMetadata(BaseModel):
    """What one dialogue turn heard, said and how long each stage took (milliseconds)."""

    request_id: str
    input_text: str
    input_language: str
    input_duration_s: float
    output_text: str
    output_duration_s: float
    output_sample_rate: int
    stt_ms: float
    llm_ms: float
    tts_ms: float
    total_ms: float


# The streaming route's events: one JSON object per line (application/x-ndjson), in this order:
# transcript, audio (one per sentence), then done or error.
class StreamTranscriptEvent(BaseModel):
    type: Literal["transcript"] = "transcript"
    request_id: str
    session_id: str | None
    text: str
    language: str
    input_duration_s: float
    stt_ms: float


class SpokenSentence(_ArrayModel):
    """One sentence of a streamed reply, as the pipeline hands it to the ingress."""

    index: int
    text: str
    speech: SpeechAudio


class StreamAudioEvent(BaseModel):
    type: Literal["audio"] = "audio"
    index: int
    text: str
    sample_rate: int
    duration_s: float
    voice: str = Field(
        default="",
        description="The voice that spoke this sentence (kokoro:jf_alpha, openjtalk:mei, "
        "piper:en_US-joe-medium, ...): tts.japanese_voice: auto picks the Japanese one by the server's speed",
    )
    audio: str = Field(description="base64 of a PCM16 mono WAV file holding this sentence")


class StreamMetadata(ProcessingMetadata):
    """ProcessingMetadata of a streamed reply: tts_ms sums the sentences; llm_ms runs to the last token."""

    time_to_first_audio_ms: float
    sentences: int
    # Why the reply guard ended the reply early (repetition, digit_run, max_sentences, max_length), or None.
    cut_reason: str | None = None
    # The turn was cut by its client (barge-in): output_text is what was delivered (played) before the cut.
    interrupted: bool = False


class DialogueResult(_ArrayModel):
    """A whole reply: its sentences joined into one recording, and what the turn heard, said and took."""

    metadata: StreamMetadata
    speech: SpeechAudio


class StreamDoneEvent(BaseModel):
    type: Literal["done"] = "done"
    metadata: StreamMetadata


class ErrorBody(BaseModel):
    """The one JSON error body of the API."""

    error_code: str
    message: str
    details: dict[str, Any] | None = None
    retry_after: int | None = None
    request_id: str


class StreamErrorEvent(ErrorBody):
    """Ends a stream that failed after its first byte; the fields of the error body."""

    type: Literal["error"] = "error"


class SessionDeleted(BaseModel):
    session_id: str
    deleted: bool


HealthState = Literal["healthy", "degraded", "unhealthy"]


class ReplicaCounts(BaseModel):
    running: int
    target: int


class ServiceStatus(BaseModel):
    status: HealthState
    engine: str
    model: str
    latency_ms: float | None = None
    replicas: ReplicaCounts
    message: str | None = None


class StatusResponse(BaseModel):
    status: HealthState
    services: dict[str, ServiceStatus]
    active_dialogues: int
    max_concurrent_dialogues: int
    version: str
    timestamp: datetime


class EngineInfo(BaseModel):
    """What a stage reports about itself for /status."""

    engine: str
    model: str
    extra: dict[str, Any] = Field(default_factory=dict)
