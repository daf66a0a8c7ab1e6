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
# Coverage starts before pytest (and mailwire's pytest plugin) and follows the
# CLI subprocesses; see [tool.coverage.run] in pyproject.toml.
.venv/bin/python -m coverage erase
status=0
.venv/bin/python -m coverage run -m pytest -q -p no:cacheprovider "$@" || status=$?
.venv/bin/python -m coverage combine -q
.venv/bin/python -m coverage report
[ "$status" -eq 0 ] || exit "$status"
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
