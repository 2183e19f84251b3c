from __future__ import annotations

import json
import logging

from voice_orchestrator.logs import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "deployments.ingress", logging.INFO, __file__, 1, "dialogue %s", ("served",), None
    )
    record.__dict__.update(extra)
    return record


def test_one_json_object_per_line_with_the_request_fields() -> None:
    line = JsonFormatter().format(_record(request_id="r-1", stage="stt", duration_ms=12.5, unrelated="x"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "dialogue served"
    assert parsed["level"] == "INFO"
    assert (parsed["request_id"], parsed["stage"], parsed["duration_ms"]) == ("r-1", "stt", 12.5)
    assert "unrelated" not in parsed
    assert parsed["timestamp"].endswith("+00:00")


def test_transcripts_only_when_allowed() -> None:
    record = _record(input_text="今日の天気は", output_text="晴れです")
    assert "input_text" not in json.loads(JsonFormatter().format(record))
    allowed = json.loads(JsonFormatter(log_transcripts=True).format(record))
    assert (allowed["input_text"], allowed["output_text"]) == ("今日の天気は", "晴れです")


def test_request_id_comes_from_the_provider_when_not_given() -> None:
    formatter = JsonFormatter(request_id_provider=lambda: "from-serve")
    assert json.loads(formatter.format(_record()))["request_id"] == "from-serve"
    assert json.loads(formatter.format(_record(request_id="explicit")))["request_id"] == "explicit"
