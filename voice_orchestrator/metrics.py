"""The application's metrics, declared once: names, kinds, tags and buckets, with no Ray import.

`deployments._metrics` turns these into `ray.serve.metrics` objects, so they reach Ray's Prometheus endpoint
beside Serve's own `ray_serve_*` metrics. Ray prefixes every name with `ray_` and counters get `_total`:
`voice_dialogues` is scraped as `ray_voice_dialogues_total`. Serve adds the `application`, `deployment` and
`replica` tags itself. Tags never carry transcripts or request ids: only small, bounded sets of values.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from voice_orchestrator.errors import HTTP_STATUS, OrchestratorErrorCode
from voice_orchestrator.text import WHISPER_LANGUAGES

MetricKind = Literal["counter", "histogram", "gauge"]

# Milliseconds, like Serve's own latency histograms, so one dashboard reads them all alike.
LATENCY_MS_BUCKETS = (
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2000.0,
    4000.0,
    8000.0,
    15000.0,
    30000.0,
    60000.0,
)
TOKENS_PER_SECOND_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    description: str
    tag_keys: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def exported_name(self) -> str:
        """The name Prometheus sees (histograms add _bucket/_sum/_count to it)."""
        return f"ray_{self.name}_total" if self.kind == "counter" else f"ray_{self.name}"


# Recorded by the stage deployments around the engine call (the model's own time, not the handle hop).
STAGE_LATENCY = MetricSpec(
    "voice_stage_latency_ms",
    "histogram",
    "Time one stage call spent in its engine (STT, LLM or TTS), in milliseconds.",
    ("stage", "engine", "language"),
    LATENCY_MS_BUCKETS,
)
# Audio seconds are counters, not histograms: Ray exports a histogram's _sum from bucket midpoints, and
# seconds of audio per second of wall time (the load in real-time factors) needs the exact total.
INPUT_AUDIO = MetricSpec(
    "voice_input_audio_seconds",
    "counter",
    "Seconds of speech received by speech-to-text.",
    ("engine", "language"),
)
OUTPUT_AUDIO = MetricSpec(
    "voice_output_audio_seconds",
    "counter",
    "Seconds of speech synthesised by text-to-speech.",
    ("engine", "language"),
)
LLM_TIME_TO_FIRST_TOKEN = MetricSpec(
    "voice_llm_time_to_first_token_ms",
    "histogram",
    "Time from a language-model request to its first streamed text, in milliseconds.",
    ("engine", "language"),
    LATENCY_MS_BUCKETS,
)
LLM_TOKENS_PER_SECOND = MetricSpec(
    "voice_llm_tokens_per_second",
    "histogram",
    "Decoding speed of one reply after its first token (streamed deltas per second).",
    ("engine", "language"),
    TOKENS_PER_SECOND_BUCKETS,
)
LLM_TOKENS = MetricSpec(
    "voice_llm_output_tokens",
    "counter",
    "Text deltas streamed by the language model (one token each with llama.cpp; vLLM may merge a few).",
    ("engine", "language"),
)
# Recorded by the ingress: one dialogue from the first byte received to the reply ready to send.
DIALOGUE_LATENCY = MetricSpec(
    "voice_dialogue_latency_ms",
    "histogram",
    "End-to-end time of a served dialogue (decode, STT, LLM, TTS), in milliseconds.",
    ("language", "mode"),
    LATENCY_MS_BUCKETS,
)
TIME_TO_FIRST_AUDIO = MetricSpec(
    "voice_time_to_first_audio_ms",
    "histogram",
    "Time from the request to the first byte of reply audio, in milliseconds.",
    ("language", "mode"),
    LATENCY_MS_BUCKETS,
)
DIALOGUES = MetricSpec(
    "voice_dialogues",
    "counter",
    "Dialogue requests by outcome (served, rejected, client_error, server_error) and error code.",
    ("outcome", "error_code", "language", "mode"),
)
REPLIES_CUT = MetricSpec(
    "voice_replies_cut",
    "counter",
    "Spoken replies the reply guard ended early (repetition, digit_run, max_sentences, max_length).",
    ("reason", "language", "mode"),
)
DIALOGUES_IN_FLIGHT = MetricSpec(
    "voice_dialogues_in_flight", "gauge", "Dialogues being processed by this ingress replica."
)
DIALOGUES_LIMIT = MetricSpec(
    "voice_dialogues_limit",
    "gauge",
    "max_concurrent_dialogues of this ingress replica: beyond it requests get 429.",
)
# Recorded by the ingress for the OpenAI-compatible routes (`/v1/...`); `route` is the route's short name
# (models, speech, voices, transcriptions, translations, chat).
OPENAI_REQUESTS = MetricSpec(
    "voice_openai_requests",
    "counter",
    "OpenAI-compatible (/v1) requests by route, outcome (served/rejected/client_error/server_error), code.",
    ("route", "outcome", "error_code"),
)
OPENAI_LATENCY = MetricSpec(
    "voice_openai_latency_ms",
    "histogram",
    "Time of a served OpenAI-compatible (/v1) request, to its last byte, in milliseconds.",
    ("route",),
    LATENCY_MS_BUCKETS,
)

# Recorded by the ingress for the realtime socket (`/v1/realtime`).
REALTIME_SESSIONS = MetricSpec(
    "voice_realtime_sessions", "gauge", "Realtime sockets open on this ingress replica."
)
REALTIME_SESSIONS_LIMIT = MetricSpec(
    "voice_realtime_sessions_limit",
    "gauge",
    "max_realtime_sessions of this ingress replica: beyond it the upgrade gets 429.",
)
REALTIME_RESPONSES = MetricSpec(
    "voice_realtime_responses",
    "counter",
    "Realtime responses by status (completed, cancelled, failed) and what cancelled them.",
    ("status", "reason"),
)
REALTIME_FIRST_AUDIO = MetricSpec(
    "voice_realtime_end_of_speech_to_first_audio_ms",
    "histogram",
    "Realtime turns: from the end of the user's speech (VAD) to the first audio delta sent, in milliseconds.",
    ("language",),
    LATENCY_MS_BUCKETS,
)
REALTIME_BARGE_INS = MetricSpec(
    "voice_realtime_barge_ins", "counter", "Realtime responses cut because the user started speaking."
)
REALTIME_PREEMPTIVE = MetricSpec(
    "voice_realtime_preemptive_answers",
    "counter",
    "Answers started during the user's pause: used (the turn ended there) or discarded (speech resumed).",
    ("outcome",),
)

# Recorded by the ingress for the Wyoming door (Home Assistant); `kind` is describe, transcribe, synthesize
# (one `synthesize` event) or synthesize_stream (synthesize-start ... synthesize-stop).
WYOMING_REQUESTS = MetricSpec(
    "voice_wyoming_requests",
    "counter",
    "Wyoming requests by kind, outcome (served/rejected/client_error/server_error) and error code.",
    ("kind", "outcome", "error_code"),
)
WYOMING_LATENCY = MetricSpec(
    "voice_wyoming_latency_ms",
    "histogram",
    "Time of a served Wyoming request (transcribe: audio-stop to transcript; synthesize: request to its last "
    "audio), in milliseconds.",
    ("kind",),
    LATENCY_MS_BUCKETS,
)
WYOMING_CONNECTIONS = MetricSpec(
    "voice_wyoming_connections", "gauge", "Wyoming connections open on this ingress replica."
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    STAGE_LATENCY,
    INPUT_AUDIO,
    OUTPUT_AUDIO,
    LLM_TIME_TO_FIRST_TOKEN,
    LLM_TOKENS_PER_SECOND,
    LLM_TOKENS,
    DIALOGUE_LATENCY,
    TIME_TO_FIRST_AUDIO,
    DIALOGUES,
    REPLIES_CUT,
    DIALOGUES_IN_FLIGHT,
    DIALOGUES_LIMIT,
    OPENAI_REQUESTS,
    OPENAI_LATENCY,
    REALTIME_SESSIONS,
    REALTIME_SESSIONS_LIMIT,
    REALTIME_RESPONSES,
    REALTIME_FIRST_AUDIO,
    REALTIME_BARGE_INS,
    REALTIME_PREEMPTIVE,
    WYOMING_REQUESTS,
    WYOMING_LATENCY,
    WYOMING_CONNECTIONS,
)


class Meter(Protocol):
    def record(self, spec: MetricSpec, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Counter: add `value`; histogram: observe it; gauge: set it."""
        ...


def language_tag(language: str | None) -> str:
    """A bounded tag value: a Whisper language code, or "unknown" (never free text from a request)."""
    if language and language in WHISPER_LANGUAGES:
        return language
    return "unknown"


def outcome_of(code: OrchestratorErrorCode | None) -> str:
    if code is None:
        return "served"
    if code is OrchestratorErrorCode.TOO_MANY_REQUESTS:
        return "rejected"
    return "client_error" if HTTP_STATUS[code] < 500 else "server_error"


async def measured_stream(
    deltas: AsyncIterator[str], meter: Meter, engine: str, language: str
) -> AsyncIterator[str]:
    """Pass a language model's deltas through, recording time to first token, tokens and tokens per second."""
    tags = {"engine": engine, "language": language_tag(language)}
    started = time.perf_counter()
    first: float | None = None
    count = 0
    async for delta in deltas:
        if first is None:
            first = time.perf_counter()
            meter.record(LLM_TIME_TO_FIRST_TOKEN, (first - started) * 1000.0, tags)
        count += 1
        yield delta
    if count:
        meter.record(LLM_TOKENS, float(count), tags)
    if first is not None and count > 1:
        decoding = time.perf_counter() - first
        if decoding > 0:
            meter.record(LLM_TOKENS_PER_SECOND, (count - 1) / decoding, tags)
