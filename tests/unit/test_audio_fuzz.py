"""Thousands of hostile uploads straight into the decoder: each is decoded or refused with a 4xx code."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz_strategies import hostile_uploads
from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.errors import OrchestratorError

LIMITS = AudioLimits(min_seconds=0.5, max_seconds=60.0)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_uploads)
def test_decoder_never_fails_with_anything_but_a_4xx(upload: bytes) -> None:
    try:
        audio = decode_audio(upload, LIMITS)
    except OrchestratorError as error:
        status = error.http_status
    else:
        status = 200
    assert status == 200 or 400 <= status < 500
    if status != 200:
        return
    assert LIMITS.min_seconds <= audio.duration_s <= LIMITS.max_seconds
    assert audio.samples.dtype.name == "float32"
