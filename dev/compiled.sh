#!/usr/bin/env bash
# The compiled build (mypyc; see src/mailwire/_compiled.py) in its own
# virtualenv, for dev/test.sh and the benches:
#   dev/compiled.sh [PYTHON] [VENV]    defaults: python3.11 (or python3), .venv-compiled
# mailwire is installed from a wheel (not editable: the extension modules must
# sit beside the sources they replace, in site-packages), so the sources in
# src/ are not what runs there. The wheel is rebuilt (~40 s of CPU) only when
# what it is built from changed: a hash of it is kept in the virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-}
venv=${2:-.venv-compiled}
if [ -z "$python" ]; then
  python=$(command -v python3.11 || command -v python3)
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.mailwire-compiled"
sources=$({ cat setup.py build_mailwire.py pyproject.toml
  find src -name '*.py' -print0 | LC_ALL=C sort -z | xargs -0 cat; } | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sources" ]; then
  rm -f "$stamp"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  MAILWIRE_COMPILE=1 "$venv/bin/python" -m pip install -q --disable-pip-version-check ".[test,web]"
  rm -rf build  # setuptools' work directory
  echo "$sources" >"$stamp"
fi
