#!/usr/bin/env bash
# Prints (stdout, path only) a working FerretDB v1.24.2 binary, building it once into
#   ${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/ferretdb-v1.24.2/ferretdb
# The plain `go install .../cmd/ferretdb@v1.24.2` binary panics at start because
# build/version/version.txt is not in the module, so we copy the downloaded module, write that
# file, and `go build` from the copy. The fresh binary is started once before it is kept.
#
# Backend: the test command (tests/run.sh) and the tests' own FerretDBs run it on SQLite
# (`--handler=sqlite`). PostgreSQL (`--handler=postgresql`, tests/tools/postgresql.sh starts a
# throw-away cluster as an unprivileged user) was measured with bench/copier.sh (bench/README.md,
# "The audit copier"): it is not faster for TTSCM's writes — copying 200k audit entries 4,760/s
# against SQLite's 5,701/s, 135 ms of CPU per 1,000 entries (FerretDB 88 + PostgreSQL 47) against
# 96 ms, and at 5,000 entries/s it fell 20 s behind where SQLite stayed within 3.3 s — because
# FerretDB's own per-document work dominates on both. Its cost in CI is small (58.7 MB of .debs,
# unpacked in ~4 s; initdb + start 1.7 s), so the switch stays open if FerretDB's PostgreSQL
# handler gets faster; today it would make the suite slower, not more faithful.
set -euo pipefail

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB
DEST="${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/ferretdb-$VERSION"
BIN="$DEST/ferretdb"

log() { echo "[ferretdb.sh] $*" >&2; }

if [[ -x $BIN ]]; then echo "$BIN"; exit 0; fi

mkdir -p "$DEST"
# One builder at a time; a second caller waits and then reuses the result.
exec 9>"$DEST/.lock"
flock 9
if [[ -x $BIN ]]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { log "go not found (need Go >= 1.24)"; exit 1; }
export GO111MODULE=on GOFLAGS="-mod=mod -buildvcs=false"

start=$SECONDS
log "downloading $MODULE@$VERSION"
dir=$(cd "$DEST" && go mod download -json "$MODULE@$VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[[ -d $dir ]] || { log "go mod download gave no module dir"; exit 1; }

src="$DEST/src"
rm -rf "$src"
cp -R "$dir" "$src"
chmod -R u+w "$src"                       # the module cache is read-only
echo "$VERSION" > "$src/build/version/version.txt"

log "building (a few minutes on 2 cores)"
(cd "$src" && go build -o "$BIN.tmp" ./cmd/ferretdb)

# Smoke test: start it on a free loopback port and wait until it accepts TCP connections.
data=$(mktemp -d)
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { log "no free port"; exit 1; }
"$BIN.tmp" --handler=sqlite --sqlite-url="file:$data/" --listen-addr="127.0.0.1:$port" \
  --telemetry=disable --state-dir=- --debug-addr=- >"$data/log" 2>&1 &
pid=$!
ok=
for _ in $(seq 150); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if [[ -z $ok ]]; then
  log "built binary did not start; its log:"; cat "$data/log" >&2
  rm -rf "$data"; exit 1
fi
rm -rf "$data" "$src"
mv "$BIN.tmp" "$BIN"
log "built $BIN in $((SECONDS - start)) s"
echo "$BIN"
