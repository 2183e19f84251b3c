"""Writes voice-orchestrator.json, the Grafana dashboard: `python cluster/grafana/build_dashboard.py`.

Every query reads a metric the app exports (ours: `ray_voice_*`, declared in voice_orchestrator/metrics.py;
Serve's: `ray_serve_*`); tests/integration/test_metrics.py checks the names against a live scrape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RATE = "[$__rate_interval]"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
APP = 'application=~"$application"'


def quantiles(metric: str, by: str, legend: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{APP}}}{RATE})))",
            f"p{int(q * 100)} {legend}",
        )
        for q in (0.5, 0.95)
    ]


PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    # (title, unit, [(expr, legend)])
    (
        "Dialogues per second by outcome",
        "reqps",
        [(f"sum by (outcome) (rate(ray_voice_dialogues_total{{{APP}}}{RATE}))", "{{outcome}}")],
    ),
    (
        "OpenAI-compatible (/v1) requests per second by route and outcome",
        "reqps",
        [
            (
                f"sum by (route, outcome) (rate(ray_voice_openai_requests_total{{{APP}}}{RATE}))",
                "{{route}} {{outcome}}",
            )
        ],
    ),
    (
        "OpenAI-compatible (/v1) latency p50 / p95 by route",
        "ms",
        quantiles("ray_voice_openai_latency_ms", "route", "{{route}}"),
    ),
    (
        "Realtime sockets open (/v1/realtime)",
        "short",
        [
            (f"sum(ray_voice_realtime_sessions{{{APP}}})", "open"),
            (f"sum(ray_voice_realtime_sessions_limit{{{APP}}})", "limit (all ingress replicas)"),
        ],
    ),
    (
        "Realtime responses, barge-ins and preemptive answers per second",
        "reqps",
        [
            (
                f"sum by (status) (rate(ray_voice_realtime_responses_total{{{APP}}}{RATE}))",
                "responses {{status}}",
            ),
            (f"sum(rate(ray_voice_realtime_barge_ins_total{{{APP}}}{RATE}))", "barge-ins"),
            (
                f"sum by (outcome) (rate(ray_voice_realtime_preemptive_answers_total{{{APP}}}{RATE}))",
                "preemptive {{outcome}}",
            ),
        ],
    ),
    (
        "Realtime: end of speech to first audio, p50 / p95",
        "ms",
        quantiles("ray_voice_realtime_end_of_speech_to_first_audio_ms", "language", "{{language}}"),
    ),
    (
        "Wyoming (Home Assistant) requests per second and connections open",
        "reqps",
        [
            (
                f"sum by (kind, outcome) (rate(ray_voice_wyoming_requests_total{{{APP}}}{RATE}))",
                "{{kind}} {{outcome}}",
            ),
            (f"sum(ray_voice_wyoming_connections{{{APP}}})", "connections open"),
        ],
    ),
    (
        "Wyoming (Home Assistant) latency p50 / p95 by kind",
        "ms",
        quantiles("ray_voice_wyoming_latency_ms", "kind", "{{kind}}"),
    ),
    (
        "HTTP requests per second (Serve proxy)",
        "reqps",
        [
            (
                f"sum by (route, status_code) (rate(ray_serve_num_http_requests_total{{{APP}}}{RATE}))",
                "{{route}} {{status_code}}",
            )
        ],
    ),
    (
        "Stage latency p50 / p95 (engine time)",
        "ms",
        quantiles("ray_voice_stage_latency_ms", "stage", "{{stage}}"),
    ),
    (
        "End-to-end latency and time to first audio",
        "ms",
        quantiles("ray_voice_dialogue_latency_ms", "mode", "total {{mode}}")
        + quantiles("ray_voice_time_to_first_audio_ms", "mode", "first audio {{mode}}"),
    ),
    (
        "LLM time to first token",
        "ms",
        quantiles("ray_voice_llm_time_to_first_token_ms", "engine", "{{engine}}"),
    ),
    (
        "LLM tokens per second",
        "short",
        [
            *quantiles("ray_voice_llm_tokens_per_second", "engine", "{{engine}}"),
            (f"sum by (engine) (rate(ray_voice_llm_output_tokens_total{{{APP}}}{RATE}))", "{{engine}} total"),
        ],
    ),
    (
        "Errors per second by code",
        "reqps",
        [
            (
                f'sum by (error_code) (rate(ray_voice_dialogues_total{{{APP}, outcome!="served"}}{RATE}))',
                "{{error_code}}",
            )
        ],
    ),
    (
        "Spoken replies cut by the reply guard, by reason",
        "reqps",
        [
            (
                f"sum by (reason) (rate(ray_voice_replies_cut_total{{{APP}}}{RATE}))",
                "{{reason}}",
            )
        ],
    ),
    (
        "Share of dialogues refused with 429",
        "percentunit",
        [
            (
                f'sum(rate(ray_voice_dialogues_total{{{APP}, outcome="rejected"}}{RATE}))'
                f" / sum(rate(ray_voice_dialogues_total{{{APP}}}{RATE}))",
                "ingress admission + full stage queues",
            ),
            (
                f'sum(rate(ray_serve_num_http_requests_total{{{APP}, status_code="429"}}{RATE}))'
                f" / sum(rate(ray_serve_num_http_requests_total{{{APP}}}{RATE}))",
                "all HTTP 429 (incl. proxy backpressure)",
            ),
        ],
    ),
    (
        "Healthy replicas per deployment",
        "short",
        [(f"sum by (deployment) (ray_serve_deployment_replica_healthy{{{APP}}})", "{{deployment}}")],
    ),
    (
        "Queue depth: waiting in handles / running in replicas",
        "short",
        [
            (f"sum by (deployment) (ray_serve_deployment_queued_queries{{{APP}}})", "queued {{deployment}}"),
            (
                f"sum by (deployment) (ray_serve_replica_processing_queries{{{APP}}})",
                "running {{deployment}}",
            ),
        ],
    ),
    (
        "Dialogues in flight vs limit",
        "short",
        [
            (f"sum(ray_voice_dialogues_in_flight{{{APP}}})", "in flight"),
            (f"sum(ray_voice_dialogues_limit{{{APP}}})", "limit (all ingress replicas)"),
        ],
    ),
    (
        "Audio seconds per second (load in real-time factors)",
        "short",
        [
            (f"sum(rate(ray_voice_input_audio_seconds_total{{{APP}}}{RATE}))", "speech in"),
            (f"sum(rate(ray_voice_output_audio_seconds_total{{{APP}}}{RATE}))", "speech out"),
        ],
    ),
    (
        "Serve processing latency p95 per deployment",
        "ms",
        [
            (
                "histogram_quantile(0.95, sum by (le, deployment) "
                f"(rate(ray_serve_deployment_processing_latency_ms_bucket{{{APP}}}{RATE})))",
                "{{deployment}}",
            )
        ],
    ),
]


def panel(index: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for n, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "voice-orchestrator",
        "title": "Voice dialogue orchestrator",
        "tags": ["ray", "serve", "voice"],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "application",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": "label_values(ray_voice_dialogues_total, application)",
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


if __name__ == "__main__":
    target = Path(__file__).with_name("voice-orchestrator.json")
    target.write_text(json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {target}")
