"""The app served for a benchmark as users serve it: `serve run serve_config.yaml` of a source tree (the
working tree or an exported commit), in its own Ray instance, on its own port."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def source_tree(ref: str | None) -> Iterator[Path]:
    """The working tree (ref None) or a commit exported to a temporary directory."""
    if ref is None:
        yield ROOT
        return
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory(prefix="bench-version-") as directory:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        yield Path(directory)


@contextmanager
def served(
    tree: Path, port: int, env: dict[str, str] | None = None, timeout_s: float = 600.0
) -> Iterator[str]:
    """`serve run` of the tree's serve_config.yaml on `port` until the status route answers (bounded); `env`
    overrides settings the way users do (VOICE_STT__FITTED_WINDOW=false), replicas included."""
    config = (tree / "serve_config.yaml").read_text().replace("port: 8000", f"port: {port}")
    name = f".bench_serve_config_{port}.yaml"
    (tree / name).write_text(config)
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(tree)}
    serve = Path(sys.executable).with_name("serve")
    process = subprocess.Popen(
        [str(serve), "run", name],
        cwd=tree,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve run of {tree} did not come up")
            try:
                if httpx.get(f"{url}/api/orchestrator/status", timeout=5).json().get("status") == "healthy":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(2)
        yield url
    finally:
        stop_group(process, signal.SIGINT, 60.0)
        (tree / name).unlink(missing_ok=True)


def stop_group(process: subprocess.Popen[bytes], first: signal.Signals, grace_s: float) -> None:
    """Signal a process group started with `start_new_session` (a server and its children), then kill what is
    left after `grace_s`. One that died already has no group left to signal."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, first)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_ports(count: int, exclude: Collection[int] = ()) -> list[int]:
    """Loopback ports free now (tests and benches alike)."""
    # Outside Ray's worker ports (10002-19999) and the kernel's ephemeral range (32768+), where a port that is
    # free now could be handed to another socket before Serve's proxy binds it.
    ports: list[int] = []
    for port in random.sample(range(20_000, 30_000), 200):
        if port in exclude:  # free now, but promised to another listener of the test app
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free ports in 20000-29999")
