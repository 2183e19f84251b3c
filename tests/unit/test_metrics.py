"""The metric table, the tag helpers and the LLM stream meter; the dashboard reads only declared metrics."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from voice_orchestrator.errors import OrchestratorErrorCode
from voice_orchestrator.metrics import (
    ALL_METRICS,
    LLM_TIME_TO_FIRST_TOKEN,
    LLM_TOKENS,
    LLM_TOKENS_PER_SECOND,
    MetricSpec,
    language_tag,
    measured_stream,
    outcome_of,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana" / "voice-orchestrator.json"


class RecordingMeter:
    def __init__(self) -> None:
        self.records: list[tuple[MetricSpec, float, dict[str, str]]] = []

    def record(self, spec: MetricSpec, value: float, tags: Mapping[str, str] | None = None) -> None:
        given = dict(tags or {})
        assert set(given) == set(spec.tag_keys), spec.name
        self.records.append((spec, value, given))


def test_metric_names_are_unique_prometheus_names_with_bounded_tags() -> None:
    names = [spec.name for spec in ALL_METRICS]
    assert len(names) == len(set(names))
    for spec in ALL_METRICS:
        assert re.fullmatch(r"voice_[a-z0-9_]+", spec.name), spec.name
        assert not spec.name.endswith("_total"), "Ray appends _total to counters itself"
        assert (spec.kind == "histogram") == bool(spec.buckets), spec.name
        assert list(spec.buckets) == sorted(spec.buckets)
        # Free text and per-request ids would explode the series count and leak personal data.
        assert not {"request_id", "text", "transcript"} & set(spec.tag_keys)


def test_language_tag_is_bounded() -> None:
    assert language_tag("ja") == "ja"
    assert language_tag("en") == "en"
    assert language_tag(None) == "unknown"
    assert language_tag("今日の天気は") == "unknown"
    assert language_tag("xx-evil") == "unknown"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (None, "served"),
        (OrchestratorErrorCode.TOO_MANY_REQUESTS, "rejected"),
        (OrchestratorErrorCode.INVALID_AUDIO_FORMAT, "client_error"),
        (OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED, "client_error"),
        (OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE, "server_error"),
        (OrchestratorErrorCode.PROCESSING_TIMEOUT, "server_error"),
    ],
)
def test_outcome_of_error_codes(code: OrchestratorErrorCode | None, outcome: str) -> None:
    assert outcome_of(code) == outcome


async def _deltas(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


async def test_measured_stream_passes_deltas_through_and_records_speed() -> None:
    meter = RecordingMeter()
    out = [d async for d in measured_stream(_deltas("Par", "is", "."), meter, "llama-cpp", "en")]
    assert out == ["Par", "is", "."]
    recorded = {spec.name: (value, tags) for spec, value, tags in meter.records}
    assert recorded[LLM_TOKENS.name][0] == 3.0
    assert recorded[LLM_TIME_TO_FIRST_TOKEN.name][0] >= 0.0
    assert recorded[LLM_TOKENS_PER_SECOND.name][0] > 0.0
    assert recorded[LLM_TOKENS.name][1] == {"engine": "llama-cpp", "language": "en"}


async def test_measured_stream_of_nothing_records_no_speed() -> None:
    meter = RecordingMeter()
    assert [d async for d in measured_stream(_deltas(), meter, "vllm", "ja")] == []
    assert meter.records == []


def dashboard_metric_names() -> set[str]:
    """Every metric a dashboard query reads, without the histogram suffixes."""
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names.update(re.findall(r"\b(ray_[a-z0-9_]+)", target["expr"]))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def test_dashboard_reads_only_declared_voice_metrics() -> None:
    declared = {spec.exported_name for spec in ALL_METRICS}
    ours = {name for name in dashboard_metric_names() if name.startswith("ray_voice_")}
    assert ours, "the dashboard shows none of the app's own metrics"
    assert ours <= declared, ours - declared
    # Every metric we declare is on some panel: a new metric nobody can see is a mistake.
    assert declared <= ours, declared - ours


def test_dashboard_is_current() -> None:
    script = DASHBOARD.with_name("build_dashboard.py")
    spec = importlib.util.spec_from_file_location("build_dashboard", script)
    assert spec is not None
    assert spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert json.loads(DASHBOARD.read_text()) == builder.dashboard(), f"run python {script}"
