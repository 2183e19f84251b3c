"""OpenAI's request and response shapes, as this server accepts and answers them (checked against the
official `openai` Python package's types). Fields OpenAI defines that we cannot honour are accepted and
ignored where ignoring them is harmless (`instructions`), refused where it is not; fields marked "extension"
are ours."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voice_orchestrator.protocol import SpeechTask

Stage = Literal["stt", "llm", "tts", "dialogue"]


class ModelCard(BaseModel):
    """`GET /v1/models` entries (OpenAI's Model, with vLLM's `root` and our extensions)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "voice-orchestrator"
    root: str = Field(description="The engine's own name of the loaded model (extension, as vLLM's)")
    stage: Stage = Field(description="What the model does here: stt, llm, tts or dialogue (extension)")
    engine: str = Field(description="The engine serving it (extension)")
    aliases: list[str] = Field(
        default_factory=list, description="Well-known OpenAI model names accepted for it (extension)"
    )
    languages: list[str] | None = Field(
        default=None, description="The languages it is used for; None = any (extension)"
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class VoiceCard(BaseModel):
    """`GET /v1/audio/voices` entries (as Speaches and Kokoro-FastAPI list theirs)."""

    id: str
    object: Literal["voice"] = "voice"
    languages: list[str] = Field(description="Languages the voice speaks; empty = the model's languages")
    model: str = Field(description="The text-to-speech model id that speaks it")
    default_for: list[str] = Field(
        default_factory=list, description="Languages for which it is the voice an OpenAI voice name picks"
    )


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceCard]
    openai_voice_names: list[str] = Field(
        description="OpenAI's voice names (alloy, ...): accepted, each picks the default voice of the text's "
        "language"
    )


class VoiceId(BaseModel):
    id: str = Field(min_length=1, max_length=64)


AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class SpeechRequest(BaseModel):
    """`POST /v1/audio/speech`."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    input: str = Field(min_length=1)
    voice: str | VoiceId
    response_format: AudioFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(default=None, description="Accepted and ignored: the voices take none")
    language: str | None = Field(
        default=None,
        max_length=16,
        description="Extension: the language of non-Japanese text for multilingual voices (Coqui XTTS); "
        "Japanese is recognised from its script",
    )

    @property
    def voice_id(self) -> str:
        return self.voice if isinstance(self.voice, str) else self.voice.id


class SpeechUsage(BaseModel):
    input_tokens: int = Field(description="Characters of input (the voices have no tokens)")
    output_tokens: int = 0
    total_tokens: int


class SpeechAudioDelta(BaseModel):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str = Field(description="base64 of the next bytes of audio in the response_format")


class SpeechAudioDone(BaseModel):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage


TranscriptionFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]


class TranslationForm(BaseModel):
    """`POST /v1/audio/translations`'s form fields (the file apart). `prompt` and `temperature` are accepted
    and ignored: the recogniser decodes greedily without a prompt."""

    model: str = Field(min_length=1, max_length=256, description="whisper-1, or an id of GET /v1/models")
    prompt: str | None = Field(default=None, description="Accepted, ignored")
    response_format: TranscriptionFormat = "json"
    temperature: float = Field(default=0.0, ge=0.0, le=1.0, description="Accepted, ignored (greedy decoding)")


class TranscriptionForm(TranslationForm):
    """`POST /v1/audio/transcriptions`'s form fields (the file apart)."""

    language: str | None = Field(
        default=None, max_length=16, description="Whisper code (ja, en, ...); absent = detect"
    )
    timestamp_granularities: list[Literal["segment"]] = Field(default_factory=list)
    stream: bool = False


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionResult(BaseModel):
    """`response_format: json`."""

    text: str
    usage: DurationUsage


class TranscriptionSegment(BaseModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = Field(default=0.0, description="Not measured here (0)")
    compression_ratio: float = Field(default=0.0, description="Not measured here (0)")
    no_speech_prob: float = Field(default=0.0, description="Not measured here (0)")


class VerboseTranscription(BaseModel):
    """`response_format: verbose_json`; `language` is the Whisper code (ja, en)."""

    task: SpeechTask = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment]
    usage: DurationUsage


class TranscriptTextDelta(BaseModel):
    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(BaseModel):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
