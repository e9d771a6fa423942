#!/usr/bin/env bash
# The machine's own steadiness, the control for bench/soak.sh's "last minute within 5 % of the
# second": the raw warp baseline (bench/baseline: fixed JSON, no state, no disk) under the
# soak's wrk settings for STEADY_SECS, sampled every 10 s. It prints req/s per sample and per
# minute, the last minute against the second, and the spread of the minutes. Whatever moves
# here moves every server on this machine: a swing in the soak's minutes no larger than this
# one is the host's, not TTSCM's.
# Knobs: STEADY_SECS=600 (whole minutes, at least 120), STEADY_CONNS=32, STEADY_PATH=/v1/teapot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STEADY_SECS=${STEADY_SECS:-600}
STEADY_CONNS=${STEADY_CONNS:-32}
STEADY_PATH=${STEADY_PATH:-/v1/teapot}
((STEADY_SECS % 60 == 0 && STEADY_SECS >= 120)) || { echo "steadiness: STEADY_SECS must be whole minutes, at least 120" >&2; exit 64; }
command -v wrk >/dev/null || { echo "steadiness: needs wrk (apt-get install wrk)" >&2; exit 69; }

cargo build --release --locked -p ttscm-warp-baseline >&2
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${CARGO_TARGET_DIR:-target}/release/ttscm-warp-baseline" "127.0.0.1:$PORT" >/dev/null 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT$STEADY_PATH" && break; sleep 0.05; done

SAMPLES=()
for ((run = 1; run <= STEADY_SECS / 10; run++)); do
    rate=$(wrk -t2 -c"$STEADY_CONNS" -d10s "http://127.0.0.1:$PORT$STEADY_PATH" | awk '/Requests\/sec/ { printf "%.0f", $2 }')
    SAMPLES+=("$rate")
    echo "  $((run * 10))s: $rate req/s" >&2
done

printf '%s\n' "${SAMPLES[@]}" | awk -v secs="$STEADY_SECS" '
    { m = int((NR - 1) / 6) + 1; sum[m] += $1; n[m]++
      if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
    END {
        minutes = secs / 60
        printf "### Steadiness: the raw warp baseline, %d s, 10 s samples from %d to %d req/s\n\n", secs, min, max
        printf "| minute | req/s |\n|---|---|\n"
        for (i = 1; i <= minutes; i++) { r[i] = sum[i] / n[i]; printf "| %d | %.0f |\n", i, r[i] }
        lo = hi = r[2]
        for (i = 2; i <= minutes; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
        printf "\nLast minute = %.1f %% of minute 2; minutes 2-%d from %.1f %% to %.1f %% of minute 2 (spread %.1f %% of their lowest).\n",
            100 * r[minutes] / r[2], minutes, 100 * lo / r[2], 100 * hi / r[2], 100 * (hi - lo) / lo
    }'
