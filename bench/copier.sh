#!/usr/bin/env bash
# Audit copier benchmark: how fast the copier moves entries from the JetStream stream
# TTSCM_AUDIT into the `audit_entries` collection, on FerretDB over SQLite and over PostgreSQL,
# beside the CPU each side spends. Runs the example `audit_copier_bench` (ttscm-runtime) once per
# backend against a nats-server and a FerretDB of its own, and prints a table. See bench/README.md
# ("The audit copier"). Knobs (environment):
#   COPIER_BACKENDS="sqlite postgresql"  FerretDB handlers to measure, in order
#   COPIER_ENTRIES=200000    entries appended with the copier stopped, then drained
#   COPIER_WRITERS=32        concurrent appenders (one entry per call, like 32 connections of
#                            reveals: the group commit forms the stream's messages)
#   COPIER_RATE=5000         entries/s appended while copying in the steady phase (0 = skip it);
#                            the mesh's reveal throughput at 32 connections is 2.7–4.4k req/s
#   COPIER_STEADY_SECS=60    seconds of the steady phase
#   COPIER_BIN=path          use this build of the example instead of building it
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

COPIER_BACKENDS=${COPIER_BACKENDS:-"sqlite postgresql"}
COPIER_ENTRIES=${COPIER_ENTRIES:-200000}
COPIER_WRITERS=${COPIER_WRITERS:-32}
COPIER_RATE=${COPIER_RATE:-5000}
COPIER_STEADY_SECS=${COPIER_STEADY_SECS:-60}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ttscm-copier.XXXXXX")
PIDS=()
PG_DIRS=()
cleanup() {
    local pid dir
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for dir in "${PG_DIRS[@]}"; do tests/tools/postgresql.sh stop "$dir" || true; done
    rm -rf "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "copier: error: $*" >&2; exit 1; }

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { PORT=$p; return; }
    done
    die "no free loopback port"
}

wait_port() { # wait_port PORT PID NAME LOG
    local deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null && ((SECONDS < deadline)) || { cat "$4" >&2; die "$3 did not start"; }
        sleep 0.1
    done
}

NATS=$(tests/tools/nats-server.sh)
FERRETDB=$(tests/tools/ferretdb.sh)
if [[ -z ${COPIER_BIN:-} ]]; then
    cargo build --release --locked -p ttscm-runtime --example audit_copier_bench
    COPIER_BIN="$TARGET_DIR/release/examples/audit_copier_bench"
fi

RESULTS="$TMP_DIR/results.txt"
: >"$RESULTS"
for backend in $COPIER_BACKENDS; do
    dir="$TMP_DIR/$backend"
    mkdir -p "$dir"
    free_port; nats_port=$PORT
    "$NATS" -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
    nats_pid=$!
    PIDS+=("$nats_pid")
    wait_port "$nats_port" "$nats_pid" nats-server "$dir/nats.log"
    watch=()
    case $backend in
        sqlite)
            # As the mesh benchmark and the tests' own FerretDBs run it (see bench/README.md).
            handler=(--handler=sqlite "--sqlite-url=file:$dir/?_pragma=synchronous(normal)")
            ;;
        postgresql)
            # Directly in TMP_DIR: the cluster's user must traverse DIR's parent (postgresql.sh).
            pg="$TMP_DIR/pg"
            mkdir -p "$pg"
            PG_DIRS+=("$pg")
            started=$SECONDS
            pg_url=$(tests/tools/postgresql.sh start "$pg")
            echo "copier: PostgreSQL cluster created and started in $((SECONDS - started)) s" >&2
            watch=(--watch "postgres=$(head -n 1 "$pg/pgdata/postmaster.pid")")
            handler=(--handler=postgresql "--postgresql-url=$pg_url")
            ;;
        *) die "unknown backend $backend (sqlite or postgresql)" ;;
    esac
    free_port; fdb_port=$PORT
    "$FERRETDB" "${handler[@]}" --listen-addr="127.0.0.1:$fdb_port" --telemetry=disable \
        --state-dir=- --debug-addr=- --log-level=error >"$dir/ferretdb.log" 2>&1 &
    fdb_pid=$!
    PIDS+=("$fdb_pid")
    wait_port "$fdb_port" "$fdb_pid" FerretDB "$dir/ferretdb.log"

    "$COPIER_BIN" --label "$backend" --nats "nats://127.0.0.1:$nats_port" \
        --mongo "mongodb://127.0.0.1:$fdb_port/" --database bench --entries "$COPIER_ENTRIES" \
        --writers "$COPIER_WRITERS" --rate "$COPIER_RATE" --steady-secs "$COPIER_STEADY_SECS" \
        --watch "ferretdb=$fdb_pid" --watch "nats=$nats_pid" "${watch[@]}" | tee -a "$RESULTS" ||
        die "the $backend run failed"

    for pid in "$fdb_pid" "$nats_pid"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    [[ $backend == postgresql ]] && tests/tools/postgresql.sh stop "$TMP_DIR/pg"
done

# ---- report ---------------------------------------------------------------------------------
# value LABEL PHASE KEY: one number from the result lines ("–" when absent).
value() {
    awk -v l="label=$1" -v p="phase=$2" -v k="$3" '$2 == l && $3 == p {
        for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
    }' "$RESULTS"
}
num() { [[ -n $1 ]] && awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }' || echo "–"; }
cpu_per_k() { # CPU ms per 1,000 entries
    [[ -n $1 && -n $2 ]] && awk -v c="$1" -v n="$2" 'BEGIN { printf "%.0f ms", c * 1000 * 1000 / n }' || echo "–"
}

echo
echo "# Audit copier, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(nproc) CPUs; FerretDB" \
    "$("$FERRETDB" --version 2>/dev/null | awk '/^version:/ { print $2 }'); $COPIER_WRITERS writers." \
    "Drain: $COPIER_ENTRIES entries appended with the copier stopped, then copied. Steady:" \
    "$COPIER_RATE entries/s for $COPIER_STEADY_SECS s while copying. CPU per 1,000 entries" \
    "copied: ttscm = the bench process (the copier; in the steady phase also the appenders), ferretdb," \
    "postgres = postmaster and backends. \"count all\": one count of the ${COPIER_ENTRIES} entries (what" \
    "the audit list's total costs). Lag: age of the oldest entry not yet copied, sampled every 250 ms."
echo
echo "| backend | entries/message | drain entries/s | CPU/1k: ttscm | ferretdb | postgres | count all | steady achieved/s | entries/message | lag mean / max | tail drain | CPU/1k: ttscm | ferretdb | postgres |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for backend in $COPIER_BACKENDS; do
    n=$(value "$backend" drain entries)
    steady=$((COPIER_RATE * COPIER_STEADY_SECS))
    echo "| $backend | $(num "$(value "$backend" fill entries_per_message)" %.1f)" \
        "| $(num "$(value "$backend" drain entries_per_sec)" %.0f)" \
        "| $(cpu_per_k "$(value "$backend" drain cpu_ttscm)" "$n")" \
        "| $(cpu_per_k "$(value "$backend" drain cpu_ferretdb)" "$n")" \
        "| $(cpu_per_k "$(value "$backend" drain cpu_postgres)" "$n")" \
        "| $(num "$(value "$backend" drain count_secs)" '%.2f s')" \
        "| $(num "$(value "$backend" steady rate_achieved)" %.0f)" \
        "| $(num "$(value "$backend" steady entries_per_message)" %.1f)" \
        "| $(num "$(value "$backend" steady lag_secs_mean)" '%.2f s') / $(num "$(value "$backend" steady lag_secs_max)" '%.2f s')" \
        "| $(num "$(value "$backend" steady tail_secs)" '%.2f s')" \
        "| $(cpu_per_k "$(value "$backend" steady cpu_ttscm)" "$steady")" \
        "| $(cpu_per_k "$(value "$backend" steady cpu_ferretdb)" "$steady")" \
        "| $(cpu_per_k "$(value "$backend" steady cpu_postgres)" "$steady") |"
done
