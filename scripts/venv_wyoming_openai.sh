#!/usr/bin/env bash
# Creates .venv-wyoming-openai: wyoming-openai 0.8.0 (a Wyoming <-> OpenAI proxy, the way Home Assistant reaches
# an OpenAI-compatible server) and nothing else, for tests/clients/test_wyoming_openai.py. Idempotent: a second
# run with nothing changed does nothing.
#
#   bash scripts/venv_wyoming_openai.sh
#   VOICE_WYOMING_OPENAI_TEST=1 .venv/bin/python -m pytest tests/clients/test_wyoming_openai.py
#
# Why a venv of its own:
#   - wyoming-openai requires Python >= 3.12; the project is on 3.11. The proxy is a separate process that only
#     talks HTTP to the app's /v1, so this venv needs neither the project nor its models. The test itself (the
#     `wyoming` client, as Home Assistant drives it, and the app) runs in the main venv.
# The interpreter: $PYTHON312 if set, else a `python3.12` on PATH that runs (a pyenv shim for a version that is
# not selected does not), else the newest 3.12 under pyenv's versions directory. ≈ 10 s when the wheels are local.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${WYOMING_OPENAI_VENV:-.venv-wyoming-openai}
PINS=("wyoming-openai==0.8.0")

find_python312() {
    local candidate
    for candidate in "${PYTHON312:-}" "$(command -v python3.12 || true)" \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r); do
        if [[ -n "$candidate" ]] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
            >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! PYTHON=$(find_python312); then
    echo "error: wyoming-openai needs Python 3.12 and none was found (tried \$PYTHON312, python3.12 on PATH," \
        "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.12*): install one, e.g. \`pyenv install 3.12\`, or set PYTHON312" >&2
    exit 1
fi
source scripts/extra_venv.sh

"${pip[@]}" install "${PINS[@]}"
"${pip[@]}" check
"$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import version

import wyoming_openai.__main__  # noqa: F401

print(f"Python {sys.version.split()[0]}, wyoming-openai {version('wyoming-openai')}, wyoming {version('wyoming')},",
      f"openai {version('openai')}")
PY
touch "$STAMP"
