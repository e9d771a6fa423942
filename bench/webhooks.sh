#!/usr/bin/env bash
# Webhook delivery of WEBHOOK_EVENTS (10,000) events to a local receiver (the tests' Standard
# Webhooks receiver, verifying every signature) from an embedded `ttscm serve`: throughput and
# the delay from event to delivery (p50/p99/max). Not part of the test command.
#   TTSCM_BIN=target/release/ttscm bash bench/webhooks.sh
# Needs node with tests/oidc's packages (`npm ci` in tests/oidc) and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${TTSCM_BIN:-target/release/ttscm}
EVENTS=${WEBHOOK_EVENTS:-10000}
CONNS=${WEBHOOK_CONNS:-8}
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

mkfifo "$TMP/hold"
node tests/oidc/webhook-receiver.mjs <"$TMP/hold" >"$TMP/receiver.out" &
PIDS+=($!)
exec 3>"$TMP/hold"   # keeps the receiver's stdin open
for _ in $(seq 100); do grep -q listening "$TMP/receiver.out" 2>/dev/null && break; sleep 0.1; done
RECEIVER_PORT=$(awk '/listening/ {print $2}' "$TMP/receiver.out")

PORT=$((20000 + RANDOM % 40000))
export TTSCM_DATA_DIR=$TMP/data TTSCM_LOG=warn TTSCM_WEBHOOK__ALLOW_PRIVATE=true TTSCM_WEBHOOK__ALLOW_HTTP=true
unset NATS_URL MONGODB_URI TTSCM_NATS_URL TTSCM_MONGODB_URI
TOKEN=$("$BIN" token create --name bench --role admin --expires-in 2h)
TTSCM_LISTEN_ADDR=127.0.0.1:$PORT "$BIN" serve >"$TMP/ttscm.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

python3 bench/webhooks.py --base "http://127.0.0.1:$PORT" --token "$TOKEN" \
  --receiver "http://127.0.0.1:$RECEIVER_PORT" --events "$EVENTS" --conns "$CONNS"
