"""Loss of a whole worker node: a real two-node Ray cluster on this machine (a head started with `ray start
--head`, a stage node with `ray start --address`), the real app deployed declaratively from serve_config.yaml
with the stage replicas placed on the stage node, light dialogue load, and the stage node's raylet killed
with SIGKILL (a machine that vanishes). Every request must answer within the error contract, /status must
notice and say so, and once a replacement stage node joins (what KubeRay or the autoscaler does for a lost
worker) Serve must put the stages on it and /status must say healthy again.

The stages need the `stage_node` resource that only stage nodes offer, as GPU stages in production only fit
GPU nodes, so they wait for a stage node rather than crowd the head. The ingress and the session memory need
`ingress_node`, which only the head offers. Serve's proxy runs on the head only: both "nodes" share one IP,
where a proxy per node would fight over one port.

This cluster is its own (own temp dir, random free ports), not the session cluster of tests/conftest.py:
Ray is driven from spawned processes, and every process of the cluster is found by its temp dir and killed
by pid at the end, whatever happened. Run by `make test-multinode` (VOICE_MULTINODE_TEST=1); ≈ 6 min.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.serving import free_ports
from voice_orchestrator.protocol import ErrorBody, StatusResponse

pytestmark = pytest.mark.skipif(
    os.environ.get("VOICE_MULTINODE_TEST") != "1",
    reason="starts its own two-node Ray cluster and kills a node (≈ 6 min): run by `make test-multinode`",
)

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
STAGES = ("SpeechToText", "LanguageModel", "TextToSpeech")
STAGE_RESOURCE = "stage_node"
INGRESS_RESOURCE = "ingress_node"
NODE_START_TIMEOUT_S = 120
START_ATTEMPTS = 3
DEPLOY_TIMEOUT_S = 480  # three model loads on 2 shared cores
DETECT_TIMEOUT_S = 60
OUTAGE_MAX_S = 90  # above the stage timeouts (60 s)
RECOVER_TIMEOUT_S = 180  # from the replacement node's start to a healthy /status
REQUEST_TIMEOUT_S = 150  # above the stage timeouts (60 s): a request that outlives it hangs
LOAD_CLIENTS = 3
LOAD_MAX_REQUESTS = 40
DIALOGUE = "/api/orchestrator/dialogue"
STATUS = "/api/orchestrator/status"


def _own_pids(marker: str) -> list[int]:
    """The processes whose command line names `marker` (a temp dir of this test's cluster)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def _signal(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone meanwhile
            os.kill(pid, signum)


def _ray_env(root: Path) -> dict[str, str]:
    """This cluster's environment: token authentication (Ray's default for a new cluster) with a token of its
    own, so nothing depends on or touches ~/.ray/auth_token."""
    token = root / "auth_token"
    if not token.exists():
        token.write_text(secrets.token_hex(32))
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


@dataclass
class LocalCluster:
    """A Ray cluster of `ray start` nodes on this machine, each with its own temp dir under `root`."""

    root: Path
    gcs_port: int = field(default_factory=lambda: free_ports(1)[0])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def start_node(self, name: str, num_cpus: float, resources: dict[str, float], head: bool = False) -> None:
        """`ray start`, retried: on 2 busy cores a node's agents can miss Ray's fixed start-up deadlines."""
        errors = []
        for _ in range(START_ATTEMPTS):
            if head:
                self.gcs_port = free_ports(1)[0]
            done = subprocess.run(
                self._start_command(name, num_cpus, resources, head),
                env=_ray_env(self.root),
                capture_output=True,
                text=True,
                timeout=NODE_START_TIMEOUT_S,
                check=False,
            )
            if done.returncode == 0:
                return
            errors.append(done.stderr[-2000:])
            self._kill(self._node_pids(name, head))  # what the failed start left behind
        raise AssertionError(f"ray start of {name} failed {START_ATTEMPTS} times:\n" + "\n".join(errors))

    def _start_command(
        self, name: str, num_cpus: float, resources: dict[str, float], head: bool
    ) -> list[str]:
        ports = free_ports(8)
        command = [
            str(RAY),
            "start",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.root / name}",
            f"--num-cpus={num_cpus:g}",
            f"--resources={json.dumps(resources)}",
            "--object-store-memory=100000000",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}",
            f"--runtime-env-agent-port={ports[4]}",
            f"--metrics-export-port={ports[5]}",
        ]
        if head:
            return [
                *command,
                "--head",
                f"--port={self.gcs_port}",
                f"--ray-client-server-port={ports[6]}",
                f"--dashboard-port={ports[7]}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ]
        return [*command, f"--address={self.address}"]

    def _node_pids(self, name: str, head: bool) -> list[int]:
        # A head's ray client server names only the GCS address (with the machine's IP), not the temp dir.
        return _own_pids(str(self.root / name)) + (_own_pids(self._gcs_marker) if head else [])

    @property
    def _gcs_marker(self) -> str:
        return f":{self.gcs_port} "

    @staticmethod
    def _kill(pids: list[int]) -> None:
        _signal(pids, signal.SIGKILL)
        time.sleep(1.0)

    def raylet_pid(self, name: str) -> int:
        marker = str(self.root / name)
        for pid in _own_pids(marker):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        raise LookupError(f"no raylet for node {name}")

    def destroy(self) -> None:
        """Every process of this cluster, by pid: SIGTERM, then SIGKILL for what is left."""

        def left() -> list[int]:
            return _own_pids(str(self.root)) + _own_pids(self._gcs_marker)

        _signal(left(), signal.SIGTERM)
        deadline = time.monotonic() + 15
        while left() and time.monotonic() < deadline:
            time.sleep(0.5)
        for _ in range(3):
            if not left():
                break
            self._kill(left())
        survivors = left()
        shutil.rmtree(self.root, ignore_errors=True)
        assert not survivors, f"processes of the test cluster survived SIGKILL: {survivors}"


def _app_config() -> dict[str, Any]:
    """The production app (serve_config.yaml's `voice`), with the stages placed on stage nodes and the
    ingress and session memory on the head."""
    profile = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,) = profile["applications"]
    for deployment in app["deployments"]:
        placement = STAGE_RESOURCE if deployment["name"] in STAGES else INGRESS_RESOURCE
        deployment.setdefault("ray_actor_options", {})["resources"] = {placement: 1}
    assert {deployment["name"] for deployment in app["deployments"]} >= set(STAGES)
    config: dict[str, Any] = app
    return config


def _resources_in_use(address: str, env: dict[str, str]) -> dict[str, float]:
    """Custom resources held by actors, cluster-wide (runs in a spawned driver process)."""
    os.environ.update(env)
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        in_use: dict[str, float] = {}
        for _ in range(20):  # the resource view reaches the GCS within a few hundred ms
            total = ray.cluster_resources()  # type: ignore[no-untyped-call]
            free = ray.available_resources()  # type: ignore[no-untyped-call]
            in_use = {
                name: total.get(name, 0.0) - free.get(name, 0.0)
                for name in (STAGE_RESOURCE, INGRESS_RESOURCE)
            }
            if in_use[STAGE_RESOURCE] == len(STAGES):
                break
            time.sleep(0.5)
        return in_use
    finally:
        ray.shutdown()


def _start_serve_and_deploy(address: str, env: dict[str, str], http_port: int) -> None:
    """`serve start` + `serve deploy` of the app, as a driver that then leaves (runs in a spawned process)."""
    os.environ.update(env)
    import ray
    from ray import serve

    from tests.serving import deploy

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        profile = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": "127.0.0.1", "port": http_port},
            controller_options=profile["controller_options"],
        )
        deploy(_app_config(), timeout_s=DEPLOY_TIMEOUT_S)
    finally:
        ray.shutdown()


def _in_driver(function: Any, *args: Any) -> Any:
    """Run a Ray driver function in a fresh spawned process: this process never joins any Ray cluster."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result(timeout=DEPLOY_TIMEOUT_S + 60)


@dataclass
class Outcome:
    started: float
    elapsed: float
    status: int | None
    problem: str | None  # None: within the contract


def _judge(response: httpx.Response) -> str | None:
    """None if the response is a 200 or a JSON 429/503 of the error contract, else what is wrong."""
    if response.status_code == 200:
        return None
    if response.status_code not in (429, 503):
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"HTTP {response.status_code} not JSON: {response.text[:200]}"
    body = ErrorBody.model_validate(response.json())
    if body.retry_after is None or response.headers.get("Retry-After") != str(body.retry_after):
        return f"HTTP {response.status_code} without Retry-After: {response.text[:200]}"
    return None


def _dialogue(url: str, clip: bytes) -> Outcome:
    started = time.monotonic()
    files = {"audio": ("question.wav", clip, "application/octet-stream")}
    try:
        response = httpx.post(f"{url}{DIALOGUE}", files=files, timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as error:  # a hang or a dropped connection
        return Outcome(started, time.monotonic() - started, None, repr(error))
    return Outcome(started, time.monotonic() - started, response.status_code, _judge(response))


def _status(url: str) -> tuple[int, str]:
    response = httpx.get(f"{url}{STATUS}", timeout=30)
    report = StatusResponse.model_validate(response.json())
    assert (response.status_code == 503) == (report.status == "unhealthy"), response.text
    return response.status_code, report.status


def _wait_status(url: str, wanted: set[str], timeout_s: float, seen: list[tuple[float, str]]) -> float:
    """Poll /status every 0.5 s until its state is in `wanted`; returns when (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, state = _status(url)
        seen.append((time.monotonic(), state))
        if state in wanted:
            return seen[-1][0]
        time.sleep(0.5)
    raise AssertionError(f"/status never said {wanted} within {timeout_s:g} s: {[s for _, s in seen][-20:]}")


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    # A short root: Ray's socket paths under it must stay below the 107-byte limit.
    local = LocalCluster(Path(tempfile.mkdtemp(prefix="vo-mn-", dir="/tmp")))
    try:
        yield local
    finally:
        local.destroy()


def test_losing_the_stage_node_keeps_the_contract_and_recovers(
    cluster: LocalCluster, japanese_question: tuple[bytes, str]
) -> None:
    clip = japanese_question[0]
    cluster.start_node("head", num_cpus=1, resources={INGRESS_RESOURCE: 10}, head=True)
    cluster.start_node("stage-a", num_cpus=2, resources={STAGE_RESOURCE: 10})
    # Picked once the nodes hold their ports: picked before, it could be one of the ports a node was then
    # given (the same range), and Serve's proxy failed to bind it (seen once in CI).
    http_port = free_ports(1)[0]
    url = f"http://127.0.0.1:{http_port}"
    _in_driver(_start_serve_and_deploy, cluster.address, _ray_env(cluster.root), http_port)
    placed = _in_driver(_resources_in_use, cluster.address, _ray_env(cluster.root))
    assert placed[STAGE_RESOURCE] == len(STAGES), placed  # each stage replica holds one, on the stage node
    assert placed[INGRESS_RESOURCE] >= 2, placed  # the ingress and the session memory, on the head
    warm = _dialogue(url, clip)
    assert (warm.status, warm.problem) == (200, None), warm
    assert _status(url) == (200, "healthy")

    # Light load: a few clients, each one dialogue at a time, bounded in count and time.
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set() and len(outcomes) < LOAD_MAX_REQUESTS:
            outcome = _dialogue(url, clip)
            outcomes.append(outcome)
            if outcome.status in (429, 503):
                stop.wait(2.0)

    seen: list[tuple[float, str]] = []
    with ThreadPoolExecutor(max_workers=LOAD_CLIENTS) as pool:
        clients = [pool.submit(client) for _ in range(LOAD_CLIENTS)]
        try:
            time.sleep(3.0)  # dialogues are in flight on the stage node
            os.kill(cluster.raylet_pid("stage-a"), signal.SIGKILL)
            killed_at = time.monotonic()
            noticed_at = _wait_status(url, {"degraded", "unhealthy"}, DETECT_TIMEOUT_S, seen)
            # A real replacement takes minutes (Pod scheduling, image pull): keep the outage open until each
            # client has had an answer to a request sent into it, so the result does not hinge on how fast
            # this machine happens to start the next node.
            outage_ends = time.monotonic() + OUTAGE_MAX_S
            while time.monotonic() < outage_ends:
                if sum(outcome.started > noticed_at for outcome in outcomes) >= LOAD_CLIENTS:
                    break
                time.sleep(0.5)
            cluster.start_node("stage-b", num_cpus=2, resources={STAGE_RESOURCE: 10})
            replaced_at = time.monotonic()
            healthy_at = _wait_status(url, {"healthy"}, RECOVER_TIMEOUT_S, seen)
        finally:
            stop.set()
            for future in clients:
                future.result(timeout=REQUEST_TIMEOUT_S + 30)
    print(
        f"\nnode loss: noticed {noticed_at - killed_at:.1f} s after the kill; replacement node up "
        f"{replaced_at - killed_at:.1f} s after; healthy {healthy_at - replaced_at:.1f} s after it joined "
        f"({healthy_at - killed_at:.1f} s after the kill); /status states seen: "
        f"{sorted({state for _, state in seen})}"
    )
    for outcome in sorted(outcomes, key=lambda o: o.started):
        print(
            f"  +{outcome.started - killed_at:6.1f} s  {outcome.status}  {outcome.elapsed:5.1f} s",
            outcome.problem or "",
        )
    after = _in_driver(_resources_in_use, cluster.address, _ray_env(cluster.root))
    assert after[STAGE_RESOURCE] == len(STAGES), after  # rescheduled onto the replacement node
    final = _dialogue(url, clip)
    assert (final.status, final.problem) == (200, None), final
    assert any(outcome.started < killed_at for outcome in outcomes)  # some were in flight at the kill
    problems = [outcome for outcome in outcomes if outcome.problem is not None]
    assert not problems, problems
