"""A thousand hostile requests at the real served app: never a 5xx, and it stays healthy afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_strategies import hostile_uploads
from tests.integration.http import DIALOGUE, get_status, post_dialogue

pytestmark = pytest.mark.integration

ALLOWED = {200, 400, 413, 422, 429}


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client


field_names = st.sampled_from(["audio", "audio", "audio", "Audio", "file", ""])
languages = st.one_of(st.none(), st.sampled_from(["ja", "en", "auto", "", "xx"]), st.text(max_size=40))
content_types = st.sampled_from(["audio/wav", "application/octet-stream", "text/plain", "video/webm", ""])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upload=hostile_uploads, field=field_names, language=languages, content_type=content_types)
def test_hostile_uploads_never_get_a_5xx(
    client: httpx.Client, upload: bytes, field: str, language: str | None, content_type: str
) -> None:
    data = {"language": language} if language is not None else None
    response = client.post(DIALOGUE, files={field or "x": ("f", upload, content_type)}, data=data)
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code != 200:
        assert set(response.json()) == {"error_code", "message", "details", "retry_after", "request_id"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=2048),
    content_type=st.sampled_from(["multipart/form-data", "application/json", ""]),
)
def test_malformed_bodies_never_get_a_5xx(client: httpx.Client, body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(DIALOGUE, content=body, headers=headers)
    assert response.status_code in ALLOWED, (response.status_code, response.text)


def test_app_is_healthy_after_the_fuzzing(base_url: str, english_question: tuple[bytes, str]) -> None:
    code, report = get_status(base_url)
    assert code == 200
    assert report.status == "healthy", report
    assert post_dialogue(base_url, english_question[0]).status_code == 200
