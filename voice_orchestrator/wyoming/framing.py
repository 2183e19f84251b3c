"""Wyoming events read off a socket with bounds.

The wire format (the `wyoming` package's): a JSON header line, then `data_length` bytes of JSON merged into
its `data`, then `payload_length` bytes of payload. The package's own reader trusts both lengths; a client
could announce gigabytes. Here each part has a bound, and anything that is not a well-formed event is a
`FrameError` — after which the stream cannot be trusted to be in step, so the connection ends.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event

# A header line and its merged data are small JSON objects (the largest is `info`, a few KB, sent by us).
MAX_HEADER_BYTES = 64 * 1024
MAX_DATA_BYTES = 64 * 1024
# One audio chunk: a second of 48 kHz stereo 32-bit audio is 384 KB; clients send 1024-sample chunks.
MAX_PAYLOAD_BYTES = 1024 * 1024


class FrameError(Exception):
    """The bytes received are not a Wyoming event (or exceed a bound)."""


@dataclass(frozen=True)
class FrameLimits:
    """The bounds of an event's data and payload (its header line is bounded by the reader's own `limit`,
    MAX_HEADER_BYTES where the server makes the reader)."""

    data_bytes: int = MAX_DATA_BYTES
    payload_bytes: int = MAX_PAYLOAD_BYTES


def _length(header: dict[str, Any], key: str, bound: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FrameError(f"{key} must be a non-negative integer")
    if value > bound:
        raise FrameError(f"{key} {value} is over the limit of {bound} bytes")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise FrameError(f"{what} is not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise FrameError(f"{what} must be a JSON object")
    return parsed


async def read_event(reader: asyncio.StreamReader, limits: FrameLimits = FrameLimits()) -> Event | None:
    """The next event, or None at the end of the stream (between events)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            return None
        raise FrameError("the stream ended inside an event header") from None
    except asyncio.LimitOverrunError:
        raise FrameError("an event header is over the reader's limit") from None
    header = _json_object(line, "an event header")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise FrameError("an event header has no type")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise FrameError("an event's data must be a JSON object")
    data_length = _length(header, "data_length", limits.data_bytes)
    payload_length = _length(header, "payload_length", limits.payload_bytes)
    try:
        if data_length:
            data = {**data, **_json_object(await reader.readexactly(data_length), "an event's data")}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise FrameError("the stream ended inside an event") from None
    return Event(type=kind, data=data, payload=payload)
