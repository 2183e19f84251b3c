"""Check a Serve config file against the settings before deploying it:

    python -m voice_orchestrator.config_check serve_config.yaml [cluster/serve_config.gpu.yaml ...]

Each application of ours (`import_path: graph:...`) must have valid engine settings in `args` and a valid
`user_config` for each deployment. A running replica refuses an invalid `user_config` and keeps its settings
(it only logs why); this says why before the deploy. Exit status 1 when anything is invalid.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from voice_orchestrator.settings import LIVE_SETTINGS, OrchestratorSettings


def problems(config: dict[str, Any]) -> list[str]:
    """What is wrong with the config's settings, one line each (empty when all is valid)."""
    found: list[str] = []
    for app in config.get("applications") or []:
        if not str(app.get("import_path", "")).startswith("graph:"):
            continue  # not ours
        name = app.get("name", "?")
        try:
            OrchestratorSettings(**(app.get("args") or {}))
        except ValidationError as error:
            found.append(f"{name}: args: {error}")
        for deployment in app.get("deployments") or []:
            model = LIVE_SETTINGS.get(deployment.get("name", ""))
            if model is None:
                found.append(f"{name}: unknown deployment {deployment.get('name')!r}")
                continue
            try:
                model(**(deployment.get("user_config") or {}))
            except ValidationError as error:
                found.append(f"{name}/{deployment['name']}: user_config: {error}")
    return found


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        found = problems(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
        for line in found:
            print(f"{path}: {line}", file=sys.stderr)
        failed = failed or bool(found)
        if not found:
            print(f"{path}: settings valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
