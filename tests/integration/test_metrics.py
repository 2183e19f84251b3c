"""Ray's Prometheus endpoint carries our per-stage histograms and error counters, with the right tags."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.audio_factory import encode, tone
from tests.integration.http import assert_error, post_dialogue
from tests.integration.realtime_client import barge_in
from tests.integration.test_guard import babbled_dialogue
from tests.integration.wyoming_client import describe
from tests.unit.test_metrics import dashboard_metric_names
from voice_orchestrator.metrics import ALL_METRICS

pytestmark = pytest.mark.integration

Samples = list[tuple[str, dict[str, str], float]]

# Labels Ray and Serve put on every application metric; ours come from the metric table.
RAY_LABELS = {
    "Component", "NodeAddress", "SessionName", "Version", "WorkerId", "application", "deployment", "replica",
    "le", "otel_scope_name", "otel_scope_schema_url", "otel_scope_version", "JobId",
}  # fmt: skip


def scrape(url: str) -> tuple[str, Samples]:
    body = httpx.get(url, timeout=10).text
    samples = [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    ]
    return body, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def wait_for(url: str, ready: Callable[[Samples], bool], timeout: float = 90.0) -> tuple[str, Samples]:
    """Ray exports application metrics every few seconds: poll until they show what was sent."""
    deadline = time.monotonic() + timeout
    while True:
        body, samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return body, samples
        time.sleep(2.0)


def test_dialogues_and_bad_uploads_move_the_right_metrics(
    base_url: str, metrics_url: str, japanese_question: tuple[bytes, str]
) -> None:
    _, before = scrape(metrics_url)

    def grew(samples: Samples, name: str, **labels: str) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    audio, keyword = japanese_question
    served = post_dialogue(base_url, audio)
    assert served.status_code == 200, served.text
    bad = post_dialogue(base_url, b"this is not audio at all" * 10)
    assert_error(bad, 400, "INVALID_AUDIO_FORMAT")

    stage_counts = {
        stage: {"stage": stage, "language": "ja", "deployment": deployment}
        for stage, deployment in (("stt", "SpeechToText"), ("llm", "LanguageModel"), ("tts", "TextToSpeech"))
    }

    def everything_arrived(samples: Samples) -> bool:
        return (
            all(grew(samples, "ray_voice_stage_latency_ms_count", **t) >= 1 for t in stage_counts.values())
            and grew(samples, "ray_voice_dialogues_total", outcome="served", language="ja") >= 1
            and grew(samples, "ray_voice_dialogues_total", error_code="INVALID_AUDIO_FORMAT") >= 1
            and grew(samples, "ray_voice_dialogue_latency_ms_count", language="ja", mode="full") >= 1
            and grew(samples, "ray_voice_llm_time_to_first_token_ms_count", language="ja") >= 1
        )

    body, after = wait_for(metrics_url, everything_arrived)
    assert everything_arrived(after), "metrics did not reach the Prometheus endpoint"

    # The stage histograms carry the engine that served them.
    engines = {
        labels["stage"]: labels["engine"]
        for name, labels, _ in after
        if name == "ray_voice_stage_latency_ms_count" and labels.get("language") == "ja"
    }
    assert engines == {"stt": "faster-whisper", "llm": "llama-cpp", "tts": "embedded"}
    # A bad upload is a client error, counted with its code and nothing served.
    bad_tags = {"outcome": "client_error", "error_code": "INVALID_AUDIO_FORMAT", "language": "unknown"}
    assert grew(after, "ray_voice_dialogues_total", **bad_tags) >= 1
    assert grew(after, "ray_voice_dialogues_total", outcome="server_error") == 0
    # Seconds of speech in and out: the Japanese question is about a second long, the answer longer than 0.
    assert grew(after, "ray_voice_input_audio_seconds_total", language="ja") >= 0.5
    assert grew(after, "ray_voice_output_audio_seconds_total", language="ja") > 0.1
    assert grew(after, "ray_voice_llm_output_tokens_total", language="ja") >= 1
    # The end-to-end histogram's count moved by at least the one served dialogue, in a sane bucket.
    assert grew(after, "ray_voice_dialogue_latency_ms_bucket", le="+Inf", language="ja") >= 1
    assert grew(after, "ray_voice_dialogue_latency_ms_bucket", le="25.0", language="ja") == 0
    assert total(after, "ray_voice_dialogues_limit") >= 2

    # Tags never carry what was said or who asked.
    request_id = served.headers["x-request-id"]
    assert request_id not in body
    assert keyword not in body
    declared = {spec.name: set(spec.tag_keys) for spec in ALL_METRICS}
    for name, labels, _ in after:
        if name.startswith("ray_voice_"):
            base = name.removeprefix("ray_").removesuffix("_total")
            for suffix in ("_bucket", "_sum", "_count"):
                base = base.removesuffix(suffix)
            assert set(labels) - RAY_LABELS <= declared[base], (name, labels)


def test_every_dashboard_metric_is_exported(
    base_url: str, metrics_url: str, english_question: tuple[bytes, str]
) -> None:
    # A request that reaches the pipeline, so the ingress and Serve's request metrics exist, a served dialogue
    # whose reply is cut (latency, first audio, cut replies), and one served on /v1 for the OpenAI-compatible
    # routes' — whatever ran before, this test alone included.
    assert_error(post_dialogue(base_url, encode(tone(0.2), 16000, "wav-s16")), 400, "AUDIO_TOO_SHORT")
    assert babbled_dialogue(base_url, english_question[0]).status_code == 200
    httpx.get(f"{base_url}/v1/models", timeout=30).raise_for_status()
    # And a realtime session whose answer is cut by the next spoken question, answered preemptively.
    asyncio.run(barge_in(base_url, english_question[0]))
    # And a Wyoming (Home Assistant) request.
    asyncio.run(describe())
    wanted = dashboard_metric_names()

    def exported(samples: Samples) -> set[str]:
        names = {name for name, _, _ in samples}
        return {name for name in wanted if names & {name, f"{name}_bucket", f"{name}_count"}}

    _, samples = wait_for(metrics_url, lambda samples: exported(samples) == wanted)
    assert exported(samples) == wanted, wanted - exported(samples)
