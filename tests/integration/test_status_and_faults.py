"""/status, admission under overload, dead and failing stages, a full stage queue, and the API key."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import SecretStr
from ray import serve

from tests.integration.faults import deploy_orchestrator, kill_replica
from tests.integration.http import assert_error, get_status, post_dialogue
from voice_orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration


def test_status_reports_every_stage_healthy(base_url: str, english_question: tuple[bytes, str]) -> None:
    assert post_dialogue(base_url, english_question[0]).status_code == 200  # each stage has answered a call
    code, report = get_status(base_url)
    assert code == 200
    assert report.status == "healthy"
    assert set(report.services) == {"stt", "llm", "tts"}
    engines = {stage: service.engine for stage, service in report.services.items()}
    assert engines == {"stt": "faster-whisper", "llm": "llama-cpp", "tts": "embedded"}
    for service in report.services.values():
        assert service.status == "healthy"
        assert (service.replicas.running, service.replicas.target) == (1, 1)
        assert service.latency_ms is not None
        assert service.latency_ms > 0
    assert report.max_concurrent_dialogues == 2
    assert report.version


def test_overload_gets_200_or_429_and_status_keeps_answering(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    clip = english_question[0]
    with ThreadPoolExecutor(max_workers=12) as pool:
        dialogues = [pool.submit(post_dialogue, base_url, clip) for _ in range(12)]
        time.sleep(0.5)
        statuses = [get_status(base_url) for _ in range(3)]  # while every dialogue slot is taken
        responses = [future.result(timeout=300) for future in dialogues]
    codes = [response.status_code for response in responses]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 2
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429, "TOO_MANY_REQUESTS")
    for code, report in statuses:
        assert code == 200
        assert report.status == "healthy"  # busy is not impaired
    assert max(report.active_dialogues for _, report in statuses) >= 1


def test_status_stays_healthy_under_twice_the_dialogue_limit(
    base_url: str, english_question: tuple[bytes, str], japanese_question: tuple[bytes, str]
) -> None:
    """Liveness is not latency: with every slot busy and more clients waiting for one (no fault), /status
    polled every second says healthy at least 99 % of the time."""
    _, report = get_status(base_url)
    clients = 2 * report.max_concurrent_dialogues
    clips = [english_question[0], japanese_question[0]]
    # 30 polls a second apart, however long a poll takes on a loaded machine (bounded).
    done = threading.Event()
    deadline = time.monotonic() + 240
    codes: list[int] = []

    def keep_asking(index: int) -> None:
        while not done.is_set():
            response = post_dialogue(base_url, clips[index % 2])
            codes.append(response.status_code)
            if response.status_code == 429:
                time.sleep(float(response.headers["Retry-After"]))

    polls: list[str] = []
    with ThreadPoolExecutor(max_workers=clients) as pool:
        workers = [pool.submit(keep_asking, index) for index in range(clients)]
        try:
            while len(polls) < 30 and time.monotonic() < deadline:
                polls.append(get_status(base_url)[1].status)
                time.sleep(1.0)
        finally:
            done.set()
        for worker in workers:
            worker.result(timeout=300)
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 2
    assert len(polls) >= 30
    assert polls.count("healthy") / len(polls) >= 0.99, polls


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        ("stt", "STT_SERVICE_UNAVAILABLE"),
        ("llm", "LLM_SERVICE_UNAVAILABLE"),
        ("tts", "TTS_SERVICE_UNAVAILABLE"),
    ],
)
def test_a_stage_whose_engine_raises_gives_its_503(
    base_url: str, english_question: tuple[bytes, str], stage: str, code: str
) -> None:
    prefix = deploy_orchestrator(f"faulty-{stage}", OrchestratorSettings(), faulty_stage=stage)
    body = assert_error(post_dialogue(base_url + prefix, english_question[0]), 503, code)
    assert body.details == {"stage": stage}
    assert "injected" not in body.message  # the engine's own words stay in the logs


def test_a_stage_crashing_at_start_is_named_in_status_refusals_and_the_log(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    """What a user saw on an AMX CPU, told: the model's replica segfaults in its constructor, again and again;
    /status and the 503's details say so instead of a bare "unavailable"."""
    prefix = deploy_orchestrator("crashing-llm", OrchestratorSettings(), crashing_llm=True)
    expected = re.compile(r"CrashingLanguageModel failed to start \(replica died \d+×\)")
    try:
        deadline = time.monotonic() + 120
        message = ""
        while time.monotonic() < deadline:
            try:
                code, status = get_status(base_url + prefix)
            except (httpx.HTTPError, ValueError):  # the ingress is still starting
                code, status = 0, None
            message = (status.services["llm"].message or "") if status else ""
            if expected.search(message):
                break
            time.sleep(2)
        assert code == 503, message
        assert status is not None
        assert status.status == "unhealthy"
        assert message.startswith("no running replica ("), message
        answer = post_dialogue(base_url + prefix, english_question[0])
        body = assert_error(answer, 503, "LLM_SERVICE_UNAVAILABLE")
        assert body.details is not None
        assert expected.fullmatch(body.details["reason"].removeprefix("no running replica: ")), body.details
    finally:
        serve.delete("crashing-llm")


def test_a_full_stage_queue_gives_429_not_500(base_url: str, english_question: tuple[bytes, str]) -> None:
    # A stalled STT with one slot and a one-deep queue, behind an ingress that admits 20 dialogues.
    settings = OrchestratorSettings(max_concurrent_dialogues=20)
    prefix = deploy_orchestrator("full-queue", settings, faulty_stage="stt", stall_s=3.0)
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: post_dialogue(base_url + prefix, english_question[0]), range(6)))
    codes = sorted(response.status_code for response in responses)
    assert set(codes) <= {429, 503}, codes
    queue_full = [response for response in responses if response.status_code == 429]
    assert queue_full, codes
    for response in queue_full:
        assert assert_error(response, 429, "TOO_MANY_REQUESTS").details == {"stage": "stt"}


def test_api_key_guards_the_routes_when_set(base_url: str, english_question: tuple[bytes, str]) -> None:
    prefix = deploy_orchestrator("keyed", OrchestratorSettings(api_key=SecretStr("s3cret")))
    url = base_url + prefix
    assert_error(post_dialogue(url, english_question[0]), 401, "UNAUTHORIZED")
    assert_error(
        post_dialogue(url, english_question[0], {"Authorization": "Bearer wrong"}), 401, "UNAUTHORIZED"
    )
    assert_error(httpx.get(f"{url}/api/orchestrator/status", timeout=30), 401, "UNAUTHORIZED")
    good = {"Authorization": "Bearer s3cret"}
    assert post_dialogue(url, english_question[0], good).status_code == 200
    assert get_status(url, good)[0] == 200


def test_killed_replica_fails_fast_or_succeeds_and_status_follows_recovery(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    seen: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_flight = [pool.submit(post_dialogue, base_url, english_question[0]) for _ in range(2)]
        time.sleep(1.0)  # both are in speech recognition; the synthesiser is about to be needed
        kill_replica("TextToSpeech")
        killed_at = time.monotonic()
        noticed_at: float | None = None
        # Watch /status from the moment of the crash until the stage is back and the dialogues are done.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            code, report = get_status(base_url)
            seen.append(report.services["tts"].status)
            if noticed_at is None and seen[-1] != "healthy":
                noticed_at = time.monotonic()
            assert (code == 503) == (report.status == "unhealthy")
            assert report.services["stt"].status != "unhealthy"  # only the killed stage is down
            impaired_before = any(state != "healthy" for state in seen)
            if impaired_before and seen[-1] == "healthy" and all(future.done() for future in in_flight):
                break
            time.sleep(0.2)
        responses = [future.result(timeout=60) for future in in_flight]
    for response in responses:
        if response.status_code != 200:
            assert_error(response, 503, "TTS_SERVICE_UNAVAILABLE")
    assert any(state in {"degraded", "unhealthy"} for state in seen), seen
    assert noticed_at is not None
    # The status cache (0.5 s here) + Serve's controller noticing the death: 1-3 s on a quiet machine, 7.7 s
    # seen in CI with both dialogues in speech recognition on 2 cores. The bound says "while it matters":
    # long before the replacement is up, not a speed target.
    assert noticed_at - killed_at <= 30.0, seen
    assert seen[-1] == "healthy", seen
    assert post_dialogue(base_url, english_question[0]).status_code == 200
