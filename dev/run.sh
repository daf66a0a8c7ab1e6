#!/usr/bin/env bash
# The main job: mailwire's own local SMTP server, `mailwire serve`, in the
# foreground on 127.0.0.1:8025 (or $MAILWIRE_PORT), storing every message in
# the Maildir ./mail and printing one line per message. Ctrl-C or SIGTERM
# stops it cleanly. Extra arguments go to `mailwire serve` (a later --port
# wins over $MAILWIRE_PORT); see `.venv/bin/mailwire serve --help`:
#   bash dev/run.sh --print              print whole messages instead
#   bash dev/run.sh --port 2525 --sink   another port, keep nothing
# `bash dev/run.sh --demo [ARGS]` is the end-to-end check instead: start the
# server on a free port with a throwaway Maildir, send it a message with
# `mailwire send`, stop it with SIGTERM and show what it printed and stored.
set -euo pipefail
cd "$(dirname "$0")/.."
dev/bootstrap.sh
port_args=()
if [ -n "${MAILWIRE_PORT:-}" ]; then
  port_args=(--port "$MAILWIRE_PORT")
fi

demo() {
  # Globals, not locals: the EXIT trap runs after this function has returned.
  port=""
  dir=$(mktemp -d)
  .venv/bin/mailwire serve --port 0 --maildir "$dir/mail" "$@" >"$dir/out" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
  for _ in $(seq 100); do  # the banner says the server listens (and on which port)
    port=$(sed -n 's/^mailwire serve: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/out")
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "dev/run.sh: mailwire serve did not start" >&2
    exit 1
  fi
  .venv/bin/mailwire send --server "127.0.0.1:$port" --tls none \
    --from alice@example.com --to bob@example.com --subject "Hello from mailwire" \
    --body "It works: sent by mailwire's native client, received by mailwire serve." </dev/null
  kill -TERM "$server"
  wait "$server"
  echo "--- mailwire serve printed:"
  cat "$dir/out"
  echo "--- and stored in its Maildir:"
  cat "$dir"/mail/new/*
}

if [ "${1:-}" = "--demo" ]; then
  shift
  demo "$@"
else
  exec .venv/bin/mailwire serve ${port_args[@]+"${port_args[@]}"} "$@"
fi
