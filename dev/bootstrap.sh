#!/usr/bin/env bash
# Create (or refresh) a virtualenv with mailwire, its web extra (the inbox
# `mailwire serve` shows) and its test tools, and the
# Debian packages the interop and browser tests use. Idempotent; safe to run often.
#   dev/bootstrap.sh [PYTHON] [VENV]    defaults: python3.11 (or python3), .venv
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-}
venv=${2:-.venv}
if [ -z "$python" ]; then
  python=$(command -v python3.11 || command -v python3)
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.mailwire-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,web]"
  touch "$stamp"
fi
# Real peers for the interop tests: Postfix's smtp-sink/smtp-source and swaks;
# the browser the web inbox's tests drive (chromium with its chromedriver);
# and the queue's real peers: redis-server (the broker) and haproxy (in front).
packages=()
if ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ] || ! command -v swaks >/dev/null; then
  packages+=(postfix swaks)
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  packages+=(chromium chromium-driver)
fi
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
  packages+=(redis-server)
fi
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  packages+=(haproxy)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq </dev/null
  $sudo apt-get install -y -qq "${packages[@]}" </dev/null >/dev/null
fi
