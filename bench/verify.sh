#!/usr/bin/env bash
# Benchmark: the audit log at size — fill, reopen, full and incremental verification, pages, and
# the memory of each step — on the embedded journal and on a MongoDB-wire store (a FerretDB of
# its own, on SQLite or PostgreSQL). See bench/README.md ("Audit log at size"). Not a test.
# Knobs (environment):
#   VERIFY_JOURNAL_ENTRIES=10000000  entries in the journal (0 = skip the journal)
#   VERIFY_MONGO_ENTRIES=1000000     entries in the collection (0 = skip MongoDB)
#   VERIFY_MONGO_MAX=                entries the collection's full verification checks before it
#                                    stops (empty = all; each block of 1,024 is one read, which
#                                    FerretDB answers by scanning its table: ~1 s at 1 M on
#                                    PostgreSQL, minutes on SQLite)
#   VERIFY_FERRETDB_HANDLER=postgresql  FerretDB's backend: postgresql (a throw-away cluster from
#                                    tests/tools/postgresql.sh) or sqlite
#   VERIFY_MONGO_PAGE_RUNS=3         runs per page query on the collection (11 on the journal)
#   VERIFY_MONGO_FILTERED=0          1: also the filtered pages (by actor, by target) on the
#                                    collection — a count and a sort of every entry on FerretDB
#   VERIFY_DIR=<temp dir>            where the journal and FerretDB's files go (about 500 bytes
#                                    per journal entry and 1 KB per collection entry); kept when
#                                    given, so a second run reuses a filled journal
#   TTSCM_TEST_FERRETDB=ferretdb     the FerretDB 1.x binary (tests/tools installs one)
#   AUDIT_BENCH_BIN=path             use this build of the example instead of building it
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERIFY_JOURNAL_ENTRIES=${VERIFY_JOURNAL_ENTRIES:-10000000}
VERIFY_MONGO_ENTRIES=${VERIFY_MONGO_ENTRIES:-1000000}
VERIFY_MONGO_MAX=${VERIFY_MONGO_MAX-}
VERIFY_FERRETDB_HANDLER=${VERIFY_FERRETDB_HANDLER:-postgresql}
VERIFY_MONGO_FILTERED=${VERIFY_MONGO_FILTERED:-0}
VERIFY_MONGO_PAGE_RUNS=${VERIFY_MONGO_PAGE_RUNS:-3}
FERRETDB=${TTSCM_TEST_FERRETDB:-ferretdb}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RESULTS_DIR=bench/results

if [[ -n "${VERIFY_DIR:-}" ]]; then
  WORK=$VERIFY_DIR
  mkdir -p "$WORK"
  KEEP=1
else
  WORK=$(mktemp -d /tmp/ttscm-verify-bench.XXXXXX)
  KEEP=0
fi
FERRET_PID=
cleanup() {
  if [[ -n "$FERRET_PID" ]]; then
    kill "$FERRET_PID" 2>/dev/null || true
    wait "$FERRET_PID" 2>/dev/null || true
  fi
  if [[ -d "$WORK/pg/pgdata" ]]; then
    tests/tools/postgresql.sh stop "$WORK/pg" || true
  fi
  if [[ $KEEP == 0 ]]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

BIN=${AUDIT_BENCH_BIN:-}
if [[ -z "$BIN" ]]; then
  nice -n 10 cargo build --release --locked -p ttscm-runtime --example audit_verify_bench >&2
  BIN="$TARGET_DIR/release/examples/audit_verify_bench"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
  local port=$1 deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ((SECONDS > deadline)); then
      echo "FerretDB did not listen on $port within 30 s" >&2
      return 1
    fi
    sleep 0.2
  done
}

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/verify-latest.txt"
: >"$OUT"

if ((VERIFY_JOURNAL_ENTRIES > 0)); then
  echo "== journal, $VERIFY_JOURNAL_ENTRIES entries ($WORK/journal)" >&2
  "$BIN" journal "$WORK/journal" "$VERIFY_JOURNAL_ENTRIES" | tee -a "$OUT"
  du -h "$WORK/journal/audit.jsonl" | awk '{print "journal_file_size=" $1}' | tee -a "$OUT"
fi

if ((VERIFY_MONGO_ENTRIES > 0)); then
  PORT=$(free_port)
  mkdir -p "$WORK/ferretdb"
  echo "== FerretDB ($VERIFY_FERRETDB_HANDLER) on $PORT, $VERIFY_MONGO_ENTRIES entries ($WORK)" >&2
  case $VERIFY_FERRETDB_HANDLER in
    sqlite)
      # synchronous=NORMAL, as the tests and bench/run.sh run it (MongoDB's default write concern).
      backend=(--handler=sqlite "--sqlite-url=file:$WORK/ferretdb/?_pragma=synchronous(normal)") ;;
    postgresql)
      if [[ -d "$WORK/pg/pgdata" ]]; then
        tests/tools/postgresql.sh stop "$WORK/pg" >/dev/null 2>&1 || true
        rm -rf "$WORK/pg"
      fi
      mkdir -p "$WORK/pg"
      backend=(--handler=postgresql "--postgresql-url=$(tests/tools/postgresql.sh start "$WORK/pg")") ;;
    *) echo "VERIFY_FERRETDB_HANDLER: sqlite or postgresql" >&2; exit 64 ;;
  esac
  "$FERRETDB" "${backend[@]}" \
    "--listen-addr=127.0.0.1:$PORT" \
    --telemetry=disable --state-dir=- --debug-addr=- --log-level=error &
  FERRET_PID=$!
  wait_for_port "$PORT"
  AUDIT_BENCH_VERIFY_MAX=$VERIFY_MONGO_MAX AUDIT_BENCH_PAGE_RUNS=$VERIFY_MONGO_PAGE_RUNS \
    AUDIT_BENCH_FILTERED=$VERIFY_MONGO_FILTERED \
    "$BIN" mongo "mongodb://127.0.0.1:$PORT/" "$VERIFY_MONGO_ENTRIES" | tee -a "$OUT"
  ps -o rss= -p "$FERRET_PID" | awk '{printf "ferretdb_rss_mib=%.1f\n", $1 / 1024}' | tee -a "$OUT"
fi

echo "figures in $OUT" >&2
