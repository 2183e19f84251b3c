"""Deploying the app the way `serve run serve_config.yaml` and `serve deploy` do: a declarative config applied
by Serve's controller (import path + args + per-deployment options), so a later config that changes only
`user_config` updates the running replicas in place, as in production."""

from __future__ import annotations

import time
from typing import Any

from ray import serve
from ray.serve.schema import ServeDeploySchema

APP = "voice"


def app_config(args: dict[str, Any], user_configs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The test app's config: `graph:build_app` with `args`, and deployment `user_config`s when given."""
    deployments = [{"name": name, "user_config": config} for name, config in (user_configs or {}).items()]
    return {
        "name": APP,
        "route_prefix": "/",
        "import_path": "graph:build_app",
        "args": args,
        "deployments": deployments,
    }


def deploy(config: dict[str, Any], timeout_s: float = 600.0) -> None:
    """Apply the config and wait until the app runs again (bounded), or raise with Serve's own message."""
    client = serve.context._get_global_client()
    assert client is not None, "serve.start() first"
    client.deploy_apps(ServeDeploySchema.model_validate({"applications": [config]}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        status = serve.status().applications.get(APP)
        if status is None:
            continue
        state = str(getattr(status.status, "value", status.status))
        if state == "RUNNING":
            return
        if state == "DEPLOY_FAILED":
            reasons = [f"{name}: {deployment.message}" for name, deployment in status.deployments.items()]
            raise RuntimeError(f"deploy failed: {status.message} {'; '.join(reasons)}")
    raise TimeoutError(f"the app was not running within {timeout_s:g} s")
