# Shared by scripts/venv_*.sh (sourced, not run): the set-up of one extra test venv.
#
#   VENV=.venv-x; source scripts/extra_venv.sh
#
# Exits the calling script when "$VENV" was installed after the last change to pyproject.toml, the calling
# script and this file; otherwise creates the venv (with $PYTHON) and defines `pip` and `STAMP`: the caller
# installs, checks, then runs `touch "$STAMP"`.
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.installed"

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt "$0" && "$STAMP" -nt "${BASH_SOURCE[0]}" ]]; then
    echo "$VENV is up to date"
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
# Keep the venv out of git, ruff and the device tool's copy of the work tree.
printf '*\n' >"$VENV/.gitignore"
pip=("$VENV/bin/python" -m pip)
export PIP_DISABLE_PIP_VERSION_CHECK=1
