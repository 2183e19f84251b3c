"""HTTP helpers shared by the integration tests."""

from __future__ import annotations

import httpx

from voice_orchestrator.protocol import ErrorBody, StatusResponse

DIALOGUE = "/api/orchestrator/dialogue"
STATUS = "/api/orchestrator/status"


def post_dialogue(
    url: str, audio: bytes | None, headers: dict[str, str] | None = None, **fields: str
) -> httpx.Response:
    files = {"audio": ("question.wav", audio, "application/octet-stream")} if audio is not None else None
    return httpx.post(f"{url}{DIALOGUE}", files=files, data=fields or None, headers=headers, timeout=180)


def get_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, StatusResponse]:
    response = httpx.get(f"{url}{STATUS}", headers=headers, timeout=30)
    return response.status_code, StatusResponse.model_validate(response.json())


def assert_error(response: httpx.Response, status: int, code: str) -> ErrorBody:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = ErrorBody.model_validate(response.json())
    assert body.error_code == code
    assert body.request_id == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    if status in (429, 503):
        assert body.retry_after is not None
        assert response.headers["Retry-After"] == str(body.retry_after)
    return body
