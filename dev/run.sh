#!/usr/bin/env bash
# The main job, end to end on this machine: start a local catch-all SMTP
# server (aiosmtpd's debugging server until mailwire's own `mailwire serve`
# lands), send it a message with `mailwire send`, show what it received.
set -euo pipefail
cd "$(dirname "$0")/.."
dev/bootstrap.sh
port=${MAILWIRE_PORT:-8025}
log=$(mktemp)
.venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Debugging stdout >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
.venv/bin/mailwire send --server "127.0.0.1:$port" --tls none \
  --from alice@example.com --to bob@example.com --subject "Hello from mailwire" \
  --body "It works: sent by mailwire's native client."
sleep 0.3
echo "--- the server received:"
cat "$log"
