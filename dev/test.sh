#!/usr/bin/env bash
# The whole test suite: types (mypy --strict), then pytest with coverage on
# Python 3.11, then pytest again on Python 3.13 (from pyenv) when present.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
dev/bootstrap.sh
echo "== mypy --strict (src/mailwire)"
.venv/bin/mypy --strict src/mailwire
echo "== pytest on $(.venv/bin/python -V)"
.venv/bin/python -m pytest -q -p no:cacheprovider --cov=mailwire --cov-report=term:skip-covered "$@"
py313=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1 || true)
if [ -n "$py313" ]; then
  dev/bootstrap.sh "$py313" .venv-3.13
  echo "== pytest on $(.venv-3.13/bin/python -V)"
  .venv-3.13/bin/python -m pytest -q -p no:cacheprovider "$@"
else
  echo "== Python 3.13 not found under pyenv: skipped"
fi
