#!/usr/bin/env bash
# The whole test suite: types (mypy --strict), then pytest with coverage on
# Python 3.11, then pytest again on 3.13, 3.12 and 3.10, the oldest we support
# (each from pyenv, when present).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
dev/bootstrap.sh
echo "== mypy --strict (src/mailwire)"
.venv/bin/mypy --strict src/mailwire
echo "== pytest on $(.venv/bin/python -V)"
.venv/bin/python -m pytest -q -p no:cacheprovider --cov=mailwire --cov-report=term:skip-covered "$@"
for version in 3.13 3.12 3.10; do
  python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$version*/bin/python$version 2>/dev/null | tail -n 1 || true)
  if [ -n "$python" ]; then
    dev/bootstrap.sh "$python" ".venv-$version"
    echo "== pytest on $(".venv-$version/bin/python" -V)"
    ".venv-$version/bin/python" -m pytest -q -p no:cacheprovider "$@"
  else
    echo "== Python $version not found under pyenv: skipped"
  fi
done
