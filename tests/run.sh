#!/usr/bin/env bash
# The one command that runs the whole test suite (README and .ci/run call it).
# It installs and starts the real servers the tests need, on loopback and random ports,
# runs `cargo test --workspace --locked "$@"`, and stops everything again, pass or fail.
# Its exit code is the test command's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

phase() { echo "==> [tests/run.sh] $*" >&2; }

# ---- cleanup: runs on any exit, also when a step or the tests fail -------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ttscm-tests.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers --------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {   # a random loopback port nobody listens on (small race window; fine for tests)
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    port_open "$p" || { echo "$p"; return 0; }
  done
  echo "no free port found" >&2; return 1
}
wait_port() {   # wait_port PORT PID SECONDS LOGFILE NAME
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    if ! kill -0 "$2" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "$5 did not start listening on 127.0.0.1:$1; its log:" >&2
      cat "$4" >&2
      return 1
    fi
    sleep 0.2
  done
}

# ---- tools ----------------------------------------------------------------------------------
phase "tools: nats-server"
NATS_SERVER=$(tests/tools/nats-server.sh)
echo "    $NATS_SERVER ($("$NATS_SERVER" --version 2>&1))" >&2
phase "tools: ferretdb"
FERRETDB=$(tests/tools/ferretdb.sh)
echo "    $FERRETDB" >&2
phase "tools: cargo-deny"
CARGO_DENY=$(tests/tools/cargo-deny.sh)
echo "    $CARGO_DENY ($("$CARGO_DENY" --version))" >&2
# Schemathesis (PyPI, in a venv under ~/.cache/ttscm, installed once): tests/openapi.rs runs it
# against a live server with the server's own OpenAPI document.
phase "tools: schemathesis"
SCHEMATHESIS=$(tests/tools/schemathesis.sh)
echo "    $SCHEMATHESIS ($("$SCHEMATHESIS" --version))" >&2

# ---- FerretDB (MongoDB wire protocol, SQLite backend) ---------------------------------------
phase "start FerretDB"
FDB_PORT=$(free_port)
mkdir -p "$TMP/ferretdb-data"
"$FERRETDB" --handler=sqlite --sqlite-url="file:$TMP/ferretdb-data/" \
  --listen-addr="127.0.0.1:$FDB_PORT" --telemetry=disable --state-dir=- --debug-addr=- \
  >"$TMP/ferretdb.log" 2>&1 &
PIDS+=($!)
wait_port "$FDB_PORT" "$!" 30 "$TMP/ferretdb.log" FerretDB
echo "    listening on 127.0.0.1:$FDB_PORT" >&2

# ---- OpenID provider and browser (tests/oidc) ----------------------------------------------
# Providers are started per test by the Rust fixture (ttscm_testkit::oidc); here only their
# tools: Node packages (`npm ci`, skipped while node_modules matches the lock) and chromium for
# the real-browser sign-in check.
setup_oidc_tools() {
  local dir=$PWD/tests/oidc
  command -v node >/dev/null || { echo "node (>= 20) is required for tests/oidc" >&2; return 1; }
  local stamp=$dir/node_modules/.ttscm-npm-ci.stamp
  local want
  want="$(node --version) $(sha256sum <"$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f $stamp || $(<"$stamp") != "$want" ]]; then
    phase "tools: npm ci (tests/oidc)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    echo "$want" >"$stamp"
  fi
  echo "    oidc-provider $(node -p "require('$dir/node_modules/oidc-provider/package.json').version")," \
    "playwright-core $(node -p "require('$dir/node_modules/playwright-core/package.json').version")" >&2

  if [[ ! -x /usr/bin/chromium ]]; then
    phase "tools: apt-get install chromium"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  fi
  echo "    $(/usr/bin/chromium --version 2>/dev/null)" >&2

  export TTSCM_TEST_OIDC_DIR=$dir
  export TTSCM_TEST_CHROMIUM=/usr/bin/chromium
}
phase "tools: OpenID provider and browser"
setup_oidc_tools

# ---- tests ----------------------------------------------------------------------------------
export TTSCM_TEST_MONGODB_URI="mongodb://127.0.0.1:$FDB_PORT/"
export TTSCM_TEST_NATS_SERVER="$NATS_SERVER"
export TTSCM_TEST_FERRETDB="$FERRETDB"
export TTSCM_TEST_SCHEMATHESIS="$SCHEMATHESIS"
[[ -n ${CI:-} ]] && export CARGO_TERM_COLOR=never
# A CI build starts from nothing and is thrown away: incremental state (gigabytes of
# target/debug/incremental) would only cost disk and time there.
[[ -n ${CI:-} ]] && export CARGO_INCREMENTAL=0

phase "rust toolchain"
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
cargo --version >&2
df -h . >&2

phase "cargo fmt --check; cargo clippy (warnings are errors)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Licenses, duplicate crates and sources per deny.toml (advisories need GitHub: not here). It
# runs `cargo metadata`/`cargo fetch`, which reach crates.io only.
phase "cargo-deny check bans licenses sources"
"$CARGO_DENY" --workspace --locked check bans licenses sources

# The shipped deployment, rendered and validated offline (kustomize, kubeconform -strict against
# vendored schemas, the policy checks); its NATS configuration comes from `ttscm mesh init`.
phase "deploy/check.sh"
cargo build --locked -p ttscm
PATH="$(dirname "$NATS_SERVER"):$PATH" TTSCM_BIN=target/debug/ttscm deploy/check.sh

phase "cargo test --workspace --locked $*"
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$TMP/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo's own last line is a doc-test target's count).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$TMP/cargo-test.log"
exit "$status"
