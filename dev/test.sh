#!/usr/bin/env bash
# The whole test suite: types (mypy --strict), then pytest with coverage on
# Python 3.11, and pytest on 3.13, 3.12 and 3.10, the oldest we support (each
# from pyenv, when present), then the protocol, server, asyncio and client
# tests against the optional compiled core (3.11, .venv-compiled, built by
# dev/compiled.sh when the sources changed: ~45 s of CPU; its run ~2 min on
# 2 cores). Arguments go to every pytest run.
#
# It must end well inside CI's ~15 minutes on a shared 2-core machine. Most
# tests wait (on sockets, timeouts, subprocesses) rather than compute, so:
# - each pytest run spreads its tests over pytest-xdist workers; the tests are
#   safe side by side (loopback port 0, their own temporary paths, no shared
#   state);
# - two runs go at a time, 3.11's first; the other virtualenvs are made
#   meanwhile. That keeps both cores busy without starving the tests that
#   wait for a deadline;
# - Python keeps its bytecode even where the environment says not to
#   (PYTHONDONTWRITEBYTECODE): each worker and each of the ~300 `python -m
#   mailwire` the tests start would otherwise compile mailwire again, and pytest
#   rewrite every test module again; one collection per Python warms it all.
# Each run's output is printed whole once it ends, in the order above, 3.11's
# with the coverage report. Any failure fails the whole.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
unset PYTHONDONTWRITEBYTECODE
workers=${MAILWIRE_TEST_WORKERS:-$(($(nproc) + 1))}
logs=$(mktemp -d)

# Whatever still runs when this script ends (a failure, Ctrl-C) is stopped.
stop_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    stop_tree "$child"
  done
  kill "$1" 2>/dev/null || true
}
background=()
trap 'for pid in ${background[@]+"${background[@]}"}; do stop_tree "$pid"; done; rm -rf "$logs"' EXIT

# `in_background CMD...`: a script's background job ignores SIGINT; CMD gets
# it back, as in the foreground (tests that stop a child with Ctrl-C count on it).
in_background() {
  (trap - INT QUIT; "$@") &
  background+=($!)
}

dev/bootstrap.sh
versions=()
bootstrap_args=()
for version in 3.13 3.12 3.10; do
  python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$version*/bin/python$version 2>/dev/null | tail -n 1 || true)
  if [ -n "$python" ]; then
    versions+=("$version")
    bootstrap_args+=("$python" ".venv-$version")
  else
    echo "== Python $version not found under pyenv: skipped"
  fi
done

# The other virtualenvs, one after another; $logs/VERSION.made says each is done.
make_venvs() {
  while [ "$#" -gt 0 ]; do
    local version=${2#.venv-} make=(dev/bootstrap.sh "$1" "$2")
    [ "$1" != compiled ] || make=(dev/compiled.sh "" "$2")
    "${make[@]}" >"$logs/$version" 2>&1 && echo 0 >"$logs/$version.made" || echo 1 >"$logs/$version.made"
    shift 2
  done
}
versions+=(compiled)
bootstrap_args+=(compiled .venv-compiled)
in_background make_venvs ${bootstrap_args[@]+"${bootstrap_args[@]}"}

echo "== mypy --strict (src/mailwire)"
.venv/bin/mypy --strict src/mailwire

# `pytest_run VERSION [ARGS]`: the suite on one Python (3.11: .venv, with
# coverage), its caches warmed first.
pytest_run() {
  local version=$1 venv=.venv-$1
  shift
  if [ "$version" = 3.11 ]; then
    venv=.venv
  else
    until [ -f "$logs/$version.made" ]; do sleep 1; done
    [ "$(cat "$logs/$version.made")" -eq 0 ] || return 1  # its log has what bootstrap said
  fi
  local python=$venv/bin/python
  # Its own temporary directory: runs side by side do not clean up each other's.
  local options=(-q -p no:cacheprovider -n "$workers" --dist worksteal --basetemp "$logs/tmp-$version")
  "$python" -m compileall -q src >/dev/null || true
  "$python" -m pytest -q -p no:cacheprovider --collect-only >/dev/null 2>&1 || true
  local core=""
  [ "$version" != compiled ] || core=", compiled core"
  echo "== pytest on $("$python" -V)$core ($workers workers)"
  if [ "$version" = compiled ]; then
    # The parts the compiled modules serve, and the check that they are compiled.
    MAILWIRE_TEST_COMPILED=1 "$python" -m pytest "${options[@]}" \
      tests/protocol tests/server tests/aio tests/client tests/test_compiled.py "$@"
  elif [ "$version" = 3.11 ]; then
    # Coverage starts before pytest (and mailwire's pytest plugin) and follows
    # the workers and the CLI subprocesses; see [tool.coverage.run] in pyproject.toml.
    "$python" -m coverage erase
    "$python" -m coverage run -m pytest "${options[@]}" "$@"
  else
    # The queue's cluster tests (end to end, faults: minutes of both cores
    # each) ran on 3.11 already; the other Pythons run the rest.
    "$python" -m pytest "${options[@]}" -m "not cluster" "$@"
  fi
}

# Two runs at a time; $logs/VERSION.status holds each one's exit status.
schedule() {
  local version started=0
  for version in 3.11 ${versions[@]+"${versions[@]}"}; do
    while [ $((started - $(find "$logs" -maxdepth 1 -name '*.status' | wc -l))) -ge 2 ]; do sleep 1; done
    (status=0; pytest_run "$version" "$@" >"$logs/$version.run" 2>&1 || status=$?; echo "$status" >"$logs/$version.status") &
    started=$((started + 1))
  done
  wait
}
in_background schedule "$@"
scheduler=$!

status=0
for version in 3.11 ${versions[@]+"${versions[@]}"}; do
  until [ -f "$logs/$version.status" ]; do
    if ! kill -0 "$scheduler" 2>/dev/null; then
      [ -f "$logs/$version.status" ] || { echo "== pytest on $version: no result"; exit 1; }
    fi
    sleep 1
  done
  if [ "$version" != 3.11 ] && [ "$(cat "$logs/$version.made")" -ne 0 ]; then
    echo "== bootstrap of .venv-$version failed:"
    cat "$logs/$version"
  fi
  cat "$logs/$version.run"
  run_status=$(cat "$logs/$version.status")
  [ "$status" -ne 0 ] || status=$run_status
  if [ "$version" = 3.11 ]; then
    .venv/bin/python -m coverage combine -q
    .venv/bin/python -m coverage report
  fi
done
exit "$status"
