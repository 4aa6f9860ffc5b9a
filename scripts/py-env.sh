#!/usr/bin/env bash
# Prepares the Python environment the tests use (the official `standardwebhooks` library)
# and prints the path of its python on the last line of stdout. Idempotent: the venv lives
# under ${XDG_CACHE_HOME:-$HOME/.cache}/weft-py and is rebuilt only when
# tests/requirements.txt changes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/tests/requirements.txt"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/weft-py"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
    echo "py-env: $python not found; install Python 3.8+ (or set WEFT_SKIP_PY=1)" >&2
    exit 1
fi
# Several test processes may race here: one builds, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv/bin/python"
