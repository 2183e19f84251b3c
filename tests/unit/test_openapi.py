"""The committed openapi.yaml is the app's contract: it must match what the app generates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from voice_orchestrator.api.spec import openapi_document
from voice_orchestrator.errors import HTTP_STATUS

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_committed_openapi_matches_the_app() -> None:
    committed = yaml.safe_load(COMMITTED.read_text())
    assert committed == openapi_document(), "regenerate: python -m voice_orchestrator.api.spec > openapi.yaml"


def test_every_error_status_is_documented_on_the_dialogue_route() -> None:
    responses = openapi_document()["paths"]["/api/orchestrator/dialogue"]["post"]["responses"]
    for code, status in HTTP_STATUS.items():
        assert code.value in responses[str(status)]["description"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "X-Input-Text" in responses["200"]["headers"]


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_ref_of_the_committed_spec_resolves() -> None:
    committed = yaml.safe_load(COMMITTED.read_text())
    refs = set(_refs(committed))
    assert refs, "the document uses $refs"
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = committed
        for part in ref[2:].split("/"):
            assert isinstance(target, dict), f"{ref} does not resolve"
            assert part in target, f"{ref} does not resolve"
            target = target[part]


def test_edge_refusals_are_documented_on_every_route() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            for status, code in (
                (404, "NOT_FOUND"),
                (405, "METHOD_NOT_ALLOWED"),
                (408, "UPLOAD_TIMEOUT"),
                (413, "PAYLOAD_TOO_LARGE"),
            ):
                response = operation["responses"].get(str(status))
                assert response is not None, f"{method.upper()} {path} does not document {status}"
                assert code in response["description"]


def test_the_session_and_language_rules_are_in_the_spec() -> None:
    paths = openapi_document()["paths"]
    form = paths["/api/orchestrator/dialogue"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = form["schema"]["properties"]
    session = re.compile(fields["session_id"]["pattern"])
    language = re.compile(fields["language"]["pattern"])
    for value in ("abc", "a.b:c-d_1", " padded ", "", "x" * 128):
        assert session.search(value), value
    for value in ("a b", "x" * 129, "é", "a/b"):
        assert not session.search(value), value
    for value in ("ja", "EN", " auto ", "", "yue"):
        assert language.search(value), value
    for value in ("xx", "japanese", "j a"):
        assert not language.search(value), value
    path_parameter = paths["/api/orchestrator/sessions/{session_id}"]["delete"]["parameters"][0]
    assert not re.compile(path_parameter["schema"]["pattern"]).search("")
