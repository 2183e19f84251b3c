#!/usr/bin/env bash
# Installs what the browser tests (tests/browser) need: Debian's Chromium and the Python `playwright` package.
# Idempotent: a second run with everything present does nothing.
#
#   bash scripts/install_browser.sh [VENV]        # VENV defaults to .venv
#   VENV/bin/python -m pytest tests/browser
#
# Why this way:
#   - Playwright's own browser download (`playwright install`) needs Microsoft's CDN, which the CI machines
#     cannot reach; the tests drive Debian's /usr/bin/chromium through Playwright's bundled driver instead
#     (executable_path="/usr/bin/chromium"), so only Debian's and PyPI's registries are used.
#   - apt-get needs root; without root (and without sudo) the Chromium step is skipped with a message and the
#     browser tests skip themselves with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-${VENV:-.venv}}
PLAYWRIGHT_VERSION=${PLAYWRIGHT_VERSION:-1.65.2}
CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    echo "chromium: present ($("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM"))"
else
    # fonts-noto-cjk: without a Japanese font the page's screenshots show boxes instead of kana and kanji.
    packages=(chromium fonts-noto-cjk)
    if [[ $(id -u) -eq 0 ]]; then
        apt_get=(env DEBIAN_FRONTEND=noninteractive apt-get)
    elif command -v sudo >/dev/null; then
        apt_get=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
    else
        apt_get=()
        echo "chromium: missing and not root; run as root: apt-get install -y ${packages[*]}" >&2
    fi
    if [[ ${#apt_get[@]} -gt 0 ]]; then
        "${apt_get[@]}" update -q
        "${apt_get[@]}" install -y -q --no-install-recommends "${packages[@]}"
        echo "chromium: installed ($("$CHROMIUM" --version 2>/dev/null))"
    fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "no virtual environment at $VENV (create it first, e.g. 'make install')" >&2
    exit 1
fi
installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)
if [[ "$installed" == "$PLAYWRIGHT_VERSION" ]]; then
    echo "playwright: $installed present in $VENV"
else
    "$VENV/bin/python" -m pip install -q "playwright==$PLAYWRIGHT_VERSION"
    echo "playwright: $PLAYWRIGHT_VERSION installed in $VENV"
fi
