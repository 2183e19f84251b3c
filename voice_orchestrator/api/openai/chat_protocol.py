"""OpenAI's chat completion shapes (`POST /v1/chat/completions`), text only: what we accept and answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class InputAudio(BaseModel):
    data: str = Field(description="base64 of the recording")
    format: str = Field(default="wav", max_length=16, description="wav, mp3, ... (the bytes decide)")


class AudioPart(BaseModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


class ChatInputMessage(BaseModel):
    """A message as clients send it: `content` a string or a list of parts (text; input_audio from users)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    def parts(self) -> list[TextPart | AudioPart]:
        """The content as parts; a part of another type (an image) is a ValueError."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(type="text", text=self.content)]
        parts: list[TextPart | AudioPart] = []
        for part in self.content:
            kind = part.get("type")
            if kind == "text":
                parts.append(TextPart.model_validate(part))
            elif kind == "input_audio" and self.role == "user":
                parts.append(AudioPart.model_validate(part))
            else:
                raise ValueError(f"content parts of type {str(kind)[:40]!r} are not supported here")
        return parts

    def text(self) -> str:
        """The text parts joined (audio parts are transcribed before this is read)."""
        return "\n".join(part.text for part in self.parts() if isinstance(part, TextPart))


class AudioOutput(BaseModel):
    """`audio`: the spoken reply's voice (ours or an OpenAI name) and format."""

    voice: str = Field(min_length=1, max_length=64)
    format: Literal["wav", "mp3", "flac", "opus", "aac", "pcm16"] = "wav"


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """Fields we honour; the rest of OpenAI's (top_p, seed, user, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatInputMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="One choice per request")
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None

    @property
    def speaks(self) -> bool:
        return self.modalities is not None and "audio" in self.modalities

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [stop for stop in self.stop if stop]


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ReplyAudio(BaseModel):
    """`message.audio` of a spoken reply (OpenAI's ChatCompletionAudio)."""

    id: str
    data: str = Field(description="base64 of the whole spoken reply in the asked format")
    expires_at: int
    transcript: str


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    audio: ReplyAudio | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    # A streamed spoken reply: {id, data (base64 pcm16), transcript, expires_at}, one sentence per chunk.
    audio: dict[str, Any] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: ChatUsage | None = None
