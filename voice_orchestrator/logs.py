"""Structured logs: one JSON object per line with request id, stage, error code and durations.

Transcripts and replies are personal data: they only appear when `log_transcripts` is on.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Fields a log call may pass through `extra=`; anything else stays out of the line.
EXTRA_FIELDS = (
    "request_id",
    "stage",
    "error_code",
    "status_code",
    "mode",
    "route",
    "duration_ms",
    "stt_ms",
    "llm_ms",
    "tts_ms",
    "total_ms",
    "time_to_first_audio_ms",
    "sentences",
    "cut_reason",
    "input_language",
    "input_duration_s",
    "output_duration_s",
    "input_text",
    "output_text",
)
TRANSCRIPT_FIELDS = frozenset({"input_text", "output_text"})

_LOGGERS = ("voice_orchestrator", "deployments")


class JsonFormatter(logging.Formatter):
    def __init__(
        self, request_id_provider: Callable[[], str | None] | None = None, log_transcripts: bool = False
    ) -> None:
        super().__init__()
        self._request_id_provider = request_id_provider
        self._log_transcripts = log_transcripts

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in EXTRA_FIELDS:
            if field in TRANSCRIPT_FIELDS and not self._log_transcripts:
                continue
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = value
        if "request_id" not in line and self._request_id_provider is not None:
            request_id = self._request_id_provider()
            if request_id:
                line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(
    log_transcripts: bool = False,
    request_id_provider: Callable[[], str | None] | None = None,
    level: int = logging.INFO,
) -> None:
    """Send our loggers to stderr as JSON lines (Ray keeps each replica's stderr in its log files)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(request_id_provider, log_transcripts))
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
