#!/usr/bin/env bash
# Load benchmark: TTSCM against a raw warp baseline, measured with wrk in the same run.
# See bench/README.md. Knobs (environment):
#   BENCH_SECS=10          measured seconds per run of a (target, connections) cell
#   BENCH_WARMUP_SECS=2    unmeasured warm-up before the runs of each cell
#   BENCH_RUNS=1           measured runs per cell; the table shows the run with the median req/s
#   BENCH_CONNS="1 32"     connection counts
#   BENCH_WRK_THREADS=2    wrk threads for more than one connection (1 connection always uses 1)
#   BENCH_PIN_WRK=1        pin wrk to the last CPU for 1-connection cells (see README: without it
#                          the 1-connection numbers flip between two modes 3x apart)
#   BENCH_START_TIMEOUT=30 seconds to wait for a server to become ready
#   BENCH_BUSY_WARN=10     mark rows during which other processes used more than this % of CPU
#   BENCH_PAIRED=1         run a row's baseline right before each of its runs and compute its
#                          ratio against those paired runs (the host's speed drifts over minutes,
#                          so a baseline measured once, minutes earlier, skews ratios); 0 = use
#                          the baseline row alone (faster)
#   BENCH_MESH=1           also measure the mesh (six `ttscm serve --only` processes joined by a
#                          nats-server and FerretDB, installed/built by tests/tools/*.sh); 0 = skip
#   BENCH_MESH_AUTH=1      the mesh's NATS runs the generated users and permissions and the
#                          components sign principals; 0 = open NATS (binaries before issue 17)
#   BENCH_MESH_TLS=0       1 = the mesh's NATS connections use TLS
#   BENCH_MESH_OPEN_NATS=0 1 = components keep their keys (signed principals) but NATS runs without
#                          the generated users and permissions (isolates what permissions cost)
#   BENCH_NATS_SED=args    extra sed arguments applied to the generated nats.conf (e.g.
#                          "-f file.sed"), for experiments with the NATS configuration
#   BENCH_ROWS=regex       measure only the rows whose name matches (bash regex), e.g.
#                          BENCH_ROWS='^(ttscm|mesh) reveal$' BENCH_CONNS=... for an A/B of one
#                          path; baseline rows are still started for the paired ratios
#   BENCH_TICKET_CACHE_SECS=3600  TTSCM_CONNECTWISE__TICKET_CACHE_SECS of both servers: the ticket
#                          rows measure reveals under a warm ticket cache
#   BENCH_NOTE_ROWS=0      1 = also measure the "reveal (ticket, note)" rows (every reveal queues a
#                          ConnectWise note, posted in the background for minutes after the row)
#   BENCH_NOTES_WAIT=20    seconds to wait after a "ticket, note" row for the background ticket-note
#                          posts to stop (they would load the next rows)
#   BENCH_MESH_COMPANIES=20  companies of the mesh's own ConnectWise stand-in (the mesh's sync is
#                          not measured; its ticket rows need one synced company)
#   TTSCM_BIN=path         use this binary instead of building target/release/ttscm. If its file
#                          name is ttscm-warp-baseline, it runs as a *stand-in* for ttscm (started
#                          with the address as argument, no token, readiness via /v1/teapot) so the
#                          script itself can be exercised before `ttscm serve` exists.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SECS=${BENCH_SECS:-10}
BENCH_WARMUP_SECS=${BENCH_WARMUP_SECS:-2}
BENCH_RUNS=${BENCH_RUNS:-1}
BENCH_CONNS=${BENCH_CONNS:-"1 32"}
BENCH_WRK_THREADS=${BENCH_WRK_THREADS:-2}
BENCH_PIN_WRK=${BENCH_PIN_WRK:-1}
BENCH_START_TIMEOUT=${BENCH_START_TIMEOUT:-30}
BENCH_BUSY_WARN=${BENCH_BUSY_WARN:-10}
BENCH_MESH=${BENCH_MESH:-1}
BENCH_PAIRED=${BENCH_PAIRED:-1}
BENCH_ROWS=${BENCH_ROWS:-}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BASELINE_BIN="$TARGET_DIR/release/ttscm-warp-baseline"
RESULTS_DIR=bench/results

# ---------------------------------------------------------------------------------------------
# Targets, one per table row, in table order (the list is repeated per connection count).
#   server|name|path|needs_auth|baseline_name|expect[|wrk_script]
# path          may contain @CID@: the id of a credential seeded on that server (see seed), and
#               the other seeded ids: @TOTP@ (a credential with a `totp` field `otp`), @RCID@ (type
#               with revealPolicy `reason`), @TCID@ / @NCID@ (a credential of a ConnectWise-synced
#               company, type with revealPolicy `ticket`, ticketNote false / true; ticket 101 is an
#               open ticket of that company in bench/connectwise_fake.py). A row whose ids were
#               not seeded on its server is left out.
# wrk_script    a wrk Lua script (e.g. bench/create.lua for POSTs; its body comes from the
#               server's BENCH_CREATE_BODY)
# server        key of a started server (see start_* below): baseline, ttscm, ...
# name          row label, unique; the ratio column looks baseline rows up by it
# needs_auth    1 = send `Authorization: Bearer <that server's API token>`; user = the access
#               token of a user signed in through the OpenID provider; refresh = the row rotates
#               that user's refresh token itself (its script; 1 connection only)
# baseline_name name of the baseline row with the same route, for the ratio column ("" = none)
# expect        HTTP status every response must have: checked with curl before measuring; in
#               the wrk runs a 2xx expectation tolerates no non-2xx response and a non-2xx
#               expectation no 2xx/3xx one
# To add a TTSCM route: add a row here, and a baseline row plus a route in
# bench/baseline/src/main.rs if a raw-warp ceiling makes sense for it (else leave baseline_name
# empty; the ratio column then shows "–"). Routes that write (POST/PATCH) need a wrk Lua script
# (-s); add a seventh field for it when the first such route arrives.
# ---------------------------------------------------------------------------------------------
TARGETS=(
    "baseline|warp teapot|/v1/teapot|0||418"
    "ttscm|ttscm teapot|/v1/teapot|0|warp teapot|418"
    "baseline|warp list|/v1/credential-type/credential-types|0||200"
    "ttscm|ttscm list|/v1/credential-type/credential-types|1|warp list|200"
    "ttscm|ttscm fetch credential|/v1/credential/credentials/@CID@|1|warp list|200"
    "ttscm|ttscm reveal|/v1/credential/credentials/@CID@/secure-values|1|warp list|200"
    "ttscm|ttscm reveal (reason)|/v1/credential/credentials/@RCID@/secure-values?reason=bench|1|warp list|200"
    "ttscm|ttscm reveal (ticket)|/v1/credential/credentials/@TCID@/secure-values?ticket=101|1|warp list|200"
    "ttscm|ttscm totp code|/v1/credential/credentials/@TOTP@/totp/otp|1|warp list|200"
    "ttscm|ttscm create credential|/v1/credential/credentials|1|warp list|201|bench/create.lua"
    "ttscm|ttscm update fields|/v1/credential/credentials/@CID@/fields|1|warp list|200|bench/update.lua"
    "ttscm|ttscm search companies|/v1/company/companies?search=corp%2042&rpp=30|1|warp list|200"
    "ttscm|ttscm @me|/v1/user/@me|user|warp list|200"
    "ttscm|ttscm refresh|/v1/auth/refresh|refresh|warp list|201|bench/refresh.lua"
    "mesh|mesh list|/v1/credential-type/credential-types|1|warp list|200"
    "mesh|mesh fetch credential|/v1/credential/credentials/@CID@|1|warp list|200"
    "mesh|mesh reveal|/v1/credential/credentials/@CID@/secure-values|1|warp list|200"
    "mesh|mesh reveal (reason)|/v1/credential/credentials/@RCID@/secure-values?reason=bench|1|warp list|200"
    "mesh|mesh reveal (ticket)|/v1/credential/credentials/@TCID@/secure-values?ticket=101|1|warp list|200"
    "mesh|mesh totp code|/v1/credential/credentials/@TOTP@/totp/otp|1|warp list|200"
    "mesh|mesh create credential|/v1/credential/credentials|1|warp list|201|bench/create.lua"
    "mesh|mesh update fields|/v1/credential/credentials/@CID@/fields|1|warp list|200|bench/update.lua"
    # Only with BENCH_NOTE_ROWS=1, last: every reveal queues a ConnectWise ticket note, posted in
    # the background; the script waits (BENCH_NOTES_WAIT) for the posts to stop before going on.
    "ttscm|ttscm reveal (ticket, note)|/v1/credential/credentials/@NCID@/secure-values?ticket=101|1|warp list|200"
    "mesh|mesh reveal (ticket, note)|/v1/credential/credentials/@NCID@/secure-values?ticket=101|1|warp list|200"
)

declare -A SERVER_URL=() SERVER_PID=() SERVER_TOKEN=() SERVER_LOG=() SERVER_CID=() SERVER_BODY=() SERVER_ENV=()
# Seeded ids by "server|NAME" (a path's @NAME@), and the port of the ConnectWise stand-in a
# server talks to.
declare -A SERVER_IDS=() SERVER_CW_PORT=()
PIDS=()
TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ttscm-bench.XXXXXX")

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give each process up to 5 s to exit, then kill it.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "bench: error: $*" >&2
    exit 1
}

track_pid() { PIDS+=("$1"); }

server_started() { [[ -n ${SERVER_URL[$1]:-} ]]; }

# Sets PORT to a loopback port nobody listens on, below the ephemeral range (wrk's client ports
# come from there). Sets a variable instead of printing: a $(...) subshell would lose TAKEN_PORTS.
declare -A TAKEN_PORTS=()
PORT=
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        if [[ -z ${TAKEN_PORTS[$port]:-} ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            TAKEN_PORTS[$port]=1
            PORT=$port
            return
        fi
    done
    die "no free loopback port found"
}

# wait_ready SERVER URL STATUS: poll until URL answers STATUS; fail if the process dies first or
# the deadline passes. Checking the pid also catches "port taken by someone else".
wait_ready() {
    local server=$1 url=$2 want=$3 code="" deadline
    deadline=$((SECONDS + BENCH_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "${SERVER_PID[$server]}" 2>/dev/null; then
            tail -n 30 "${SERVER_LOG[$server]}" >&2 || true
            die "$server exited during startup (its log is above)"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        if [[ $code == "$want" ]]; then
            return
        fi
        sleep 0.1
    done
    tail -n 30 "${SERVER_LOG[$server]}" >&2 || true
    die "$server not ready after ${BENCH_START_TIMEOUT}s: GET $url did not answer $want (last: ${code:-none})"
}

# resolve_path SERVER PATH: sets RESOLVED to PATH with each @NAME@ replaced by the id seeded
# under that name on SERVER; fails when one was not seeded there.
RESOLVED=
resolve_path() {
    local server=$1 path=$2 key
    while [[ $path =~ @([A-Z]+)@ ]]; do
        key=${BASH_REMATCH[1]}
        [[ -n ${SERVER_IDS["$server|$key"]:-} ]] || return 1
        path=${path//@$key@/${SERVER_IDS["$server|$key"]}}
    done
    RESOLVED=$path
}

# rss_kib PID FIELD: a VmRSS/VmHWM line of /proc/PID/status, in KiB.
rss_kib() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }

fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

fmt_us() {
    awk -v u="$1" 'BEGIN {
        if (u < 1000) printf "%.0f µs", u
        else if (u < 1000000) printf "%.2f ms", u / 1000
        else printf "%.2f s", u / 1000000
    }'
}

fmt_int() {
    awk -v n="$1" 'BEGIN {
        s = sprintf("%.0f", n); r = ""
        while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
        print s r
    }'
}

# Percentage of all CPUs busy over one second, from /proc/stat (idle and iowait count as idle).
cpu_busy_pct() {
    local a b
    a=$(head -n1 /proc/stat)
    sleep 1
    b=$(head -n1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        n = split(a, x); split(b, y); total = 0
        for (i = 2; i <= n; i++) total += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        # parenthesised: after printf arguments a bare ">" is an output redirection in awk
        printf "%.0f", (total > 0 ? 100 * (total - idle) / total : 0)
    }'
}

CLK_TCK=$(getconf CLK_TCK)

# CPU ticks (user + system) process PID has used: fields 14 and 15 of /proc/PID/stat, counted
# after the ")" that closes the process name.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# "busy total" CPU ticks of the whole machine since boot (idle and iowait count as idle).
stat_ticks() { awk 'NR == 1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }

# Seconds of CPU the shell's finished children used between two `times` outputs (files: `times`
# inside a $(...) subshell would report the subshell's children, not ours).
children_cpu_delta() {
    awk 'function s(v,   p) { split(v, p, "m"); return p[1] * 60 + p[2] }
         FNR == 2 { t[FILENAME == ARGV[1]] = s($1) + s($2) }
         END { printf "%.3f", t[0] - t[1] }' "$1" "$2"
}

# Parse `wrk --latency` output into "rps p50_us p99_us requests non2xx socket_errors".
parse_wrk() {
    awk '
        function us(v,   n) {
            n = v + 0
            if (v ~ /us$/) return n
            if (v ~ /ms$/) return n * 1000
            if (v ~ /m$/) return n * 60000000
            if (v ~ /s$/) return n * 1000000
            return -1
        }
        /Latency Distribution/ { dist = 1; next }
        dist && $1 == "50%" { p50 = us($2) }
        dist && $1 == "99%" { p99 = us($2); dist = 0 }
        / requests in / { requests = $1 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
        /^Requests\/sec:/ { rps = $2 }
        END {
            if (rps == "" || p50 == "" || p99 == "" || p50 < 0 || p99 < 0 || requests == "") exit 1
            printf "%s %s %s %s %d %d\n", rps, p50, p99, requests, non2xx, errors
        }'
}

# ---------------------------------------------------------------------------------------------
# Tools and build
# ---------------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    echo "bench: installing wrk" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y wrk
    else
        sudo apt-get update -qq && sudo apt-get install -y wrk
    fi
fi
command -v curl >/dev/null || die "curl is required"

WRK_PIN=()
if [[ $BENCH_PIN_WRK == 1 ]] && command -v taskset >/dev/null && (($(nproc) > 1)); then
    WRK_PIN=(taskset -c "$(($(nproc) - 1))")
fi

STANDIN=0
if [[ -n ${TTSCM_BIN:-} ]]; then
    cargo build --release --locked -p ttscm-warp-baseline
    [[ -x $TTSCM_BIN ]] || die "TTSCM_BIN=$TTSCM_BIN is not an executable"
    if [[ $(basename "$TTSCM_BIN") == ttscm-warp-baseline ]]; then
        STANDIN=1
    fi
else
    cargo build --release --locked -p ttscm -p ttscm-warp-baseline
    TTSCM_BIN="$TARGET_DIR/release/ttscm"
fi

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
start_baseline() {
    free_port
    SERVER_URL[baseline]="http://127.0.0.1:$PORT"
    SERVER_LOG[baseline]="$TMP_DIR/baseline.log"
    "$BASELINE_BIN" "127.0.0.1:$PORT" >"${SERVER_LOG[baseline]}" 2>&1 &
    SERVER_PID[baseline]=$!
    track_pid $!
    wait_ready baseline "${SERVER_URL[baseline]}/v1/teapot" 418
}

start_ttscm() {
    local data_dir="$TMP_DIR/ttscm-data" out
    mkdir -p "$data_dir"
    free_port
    SERVER_URL[ttscm]="http://127.0.0.1:$PORT"
    SERVER_LOG[ttscm]="$TMP_DIR/ttscm.log"
    if ((STANDIN)); then
        "$TTSCM_BIN" "127.0.0.1:$PORT" >"${SERVER_LOG[ttscm]}" 2>&1 &
        SERVER_PID[ttscm]=$!
        track_pid $!
        wait_ready ttscm "${SERVER_URL[ttscm]}/v1/teapot" 418
        SERVER_TOKEN[ttscm]=stand-in
        return
    fi
    start_oidc_provider "${SERVER_URL[ttscm]}/v1/auth/redirect"
    TTSCM_LISTEN_ADDR="127.0.0.1:$PORT" TTSCM_DATA_DIR="$data_dir" TTSCM_LOG=warn \
        TTSCM_ENTRA__ISSUER="$OIDC_ISSUER" TTSCM_ENTRA__CLIENT_ID=bench TTSCM_ENTRA__CLIENT_SECRET=bench-secret \
        TTSCM_ENTRA__REDIRECT_URL="${SERVER_URL[ttscm]}/v1/auth/redirect" \
        "$TTSCM_BIN" serve >"${SERVER_LOG[ttscm]}" 2>&1 &
    SERVER_PID[ttscm]=$!
    track_pid $!
    wait_ready ttscm "${SERVER_URL[ttscm]}/healthz" 200
    out=$(TTSCM_DATA_DIR="$data_dir" TTSCM_LOG=warn "$TTSCM_BIN" token create --name bench --role admin \
        2>"$TMP_DIR/token.log") || die "ttscm token create failed: $(cat "$TMP_DIR/token.log")"
    SERVER_TOKEN[ttscm]=${out%%$'\n'*}
    [[ -n ${SERVER_TOKEN[ttscm]} ]] || die "ttscm token create printed no token"
}

# The test OpenID provider (tests/oidc, npm `oidc-provider`) for the sign-in rows; its client
# may redirect to $1. Sets OIDC_ISSUER.
start_oidc_provider() {
    local dir=tests/oidc deadline
    if [[ ! -d $dir/node_modules/oidc-provider ]]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci in $dir failed"
    fi
    OIDC_PORT=0 OIDC_REDIRECT_URIS="$1" OIDC_CLIENT_ID=bench OIDC_CLIENT_SECRET=bench-secret OIDC_WATCH_STDIN=0 \
        node "$dir/provider.mjs" >"$TMP_DIR/oidc.out" 2>"$TMP_DIR/oidc.log" &
    SERVER_PID[oidc]=$!
    track_pid $!
    deadline=$((SECONDS + BENCH_START_TIMEOUT))
    until grep -q issuer "$TMP_DIR/oidc.out" 2>/dev/null; do
        kill -0 "${SERVER_PID[oidc]}" 2>/dev/null || die "the OpenID provider died: $(cat "$TMP_DIR/oidc.log")"
        ((SECONDS < deadline)) || die "the OpenID provider did not start"
        sleep 0.1
    done
    OIDC_ISSUER=$(sed -E 's/.*"issuer":"([^"]+)".*/\1/' "$TMP_DIR/oidc.out")
}

# Signs a user in on a server through the OpenID provider: SERVER_USER_TOKEN and a file with
# its refresh token (SERVER_REFRESH_FILE) for the refresh row.
declare -A SERVER_USER_TOKEN=() SERVER_REFRESH_FILE=()
sign_in_user() {
    local server=$1 out
    out=$(python3 bench/oidc_login.py "${SERVER_URL[$server]}" bench-user) || die "$server: sign-in failed"
    SERVER_USER_TOKEN[$server]=${out%%$'\n'*}
    SERVER_REFRESH_FILE[$server]="$TMP_DIR/$server.refresh"
    echo "${out##*$'\n'}" >"${SERVER_REFRESH_FILE[$server]}"
}

# Starts another session for the refresh row's next wrk run and puts its refresh token in the
# row's file. Every run needs its own: when wrk stops with a refresh in flight, the server has
# used the token the file holds but wrk never saw the next one, and presenting a used token
# again revokes the session (as it should) — every later refresh, and that session's access
# token, would then fail. The other user rows keep the first session.
renew_refresh_session() {
    local server=$1 out
    out=$(python3 bench/oidc_login.py "${SERVER_URL[$server]}" bench-user) || die "$server: sign-in failed"
    echo "${out##*$'\n'}" >"${SERVER_REFRESH_FILE[$server]}"
}

# Seeds a company (CLI), a credential type and one credential (API) on a server, for the
# credential rows: SERVER_CID (the credential) and SERVER_BODY (a create body for wrk).
seed() {
    local server=$1 url=${SERVER_URL[$1]} token=${SERVER_TOKEN[$1]} company type_id body
    company=$(env ${SERVER_ENV[$server]} "$TTSCM_BIN" company add --name "Bench Co" 2>>"$TMP_DIR/seed.log") ||
        die "$server: company add failed: $(cat "$TMP_DIR/seed.log")"
    type_id=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$url/v1/credential-type/credential-types" \
        -d '{"name":"AWS","fields":[{"id":"accessKeyId","name":"Access Key ID","required":true,"secure":false,"valueType":"plain_text"},{"id":"secretAccessKey","name":"Secret Access Key","required":true,"secure":true,"valueType":"password"}]}' |
        sed -E 's/.*"data":\{"id":"([a-z0-9]+)".*/\1/') || die "$server: cannot create the credential type"
    body="{\"name\":\"Production AWS\",\"typeId\":\"$type_id\",\"companyId\":\"$company\",\"fields\":[{\"fieldId\":\"accessKeyId\",\"value\":\"AKIAIOSFODNN7EXAMPLE\"},{\"fieldId\":\"secretAccessKey\",\"value\":\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"}]}"
    SERVER_BODY[$server]=$body
    SERVER_CID[$server]=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$url/v1/credential/credentials" -d "$body" |
        sed -E 's/.*"data":\{"id":"([a-z0-9]+)".*/\1/') || die "$server: cannot create the credential"
    SERVER_IDS["$server|CID"]=${SERVER_CID[$server]}
    seed_policies "$server" "$company"
}

# post_id SERVER PATH BODY: POSTs BODY to PATH with the server's token; prints the new id.
post_id() {
    local out
    out=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer ${SERVER_TOKEN[$1]}" -H 'Content-Type: application/json' \
        "${SERVER_URL[$1]}$2" -d "$3")
    [[ ${out##*$'\n'} == 201 ]] || { echo "POST $2 answered ${out##*$'\n'}: $(head -c 300 <<<"${out%$'\n'*}")" >&2; return 1; }
    sed -E 's/.*"data":\{"id":"([a-z0-9]+)".*/\1/' <<<"${out%$'\n'*}"
}

# The reveal-policy and TOTP rows' credentials (issue 21): @TOTP@ (type with a `totp` field,
# policy none), @RCID@ (policy reason) in company $2, and, once the server has synced the
# stand-in's company 1 (ConnectWise id 1, whose ticket 101 is open), @TCID@ and @NCID@ there
# (policy ticket, without and with the ticket note).
BENCH_TOTP_SEED=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
seed_policies() {
    local server=$1 company=$2 type_id aws_fields aws_values cw_company="" deadline
    aws_fields='[{"id":"accessKeyId","name":"Access Key ID","required":true,"secure":false,"valueType":"plain_text"},{"id":"secretAccessKey","name":"Secret Access Key","required":true,"secure":true,"valueType":"password"}]'
    aws_values='[{"fieldId":"accessKeyId","value":"AKIAIOSFODNN7EXAMPLE"},{"fieldId":"secretAccessKey","value":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}]'
    type_id=$(post_id "$server" /v1/credential-type/credential-types \
        '{"name":"Shared MFA","fields":[{"id":"otp","name":"Code","required":true,"valueType":"totp"}]}') ||
        die "$server: cannot create the TOTP credential type"
    SERVER_IDS["$server|TOTP"]=$(post_id "$server" /v1/credential/credentials \
        "{\"name\":\"Bench MFA\",\"typeId\":\"$type_id\",\"companyId\":\"$company\",\"fields\":[{\"fieldId\":\"otp\",\"value\":\"$BENCH_TOTP_SEED\"}]}") ||
        die "$server: cannot create the TOTP credential"
    type_id=$(post_id "$server" /v1/credential-type/credential-types \
        "{\"name\":\"AWS (reason)\",\"fields\":$aws_fields,\"revealPolicy\":{\"require\":\"reason\"}}") ||
        die "$server: cannot create the reason-policy type"
    SERVER_IDS["$server|RCID"]=$(post_id "$server" /v1/credential/credentials \
        "{\"name\":\"AWS reason\",\"typeId\":\"$type_id\",\"companyId\":\"$company\",\"fields\":$aws_values}") ||
        die "$server: cannot create the reason-policy credential"
    [[ -n ${SERVER_CW_PORT[$server]:-} ]] || return 0
    # The company synced from ConnectWise id 1 (identifier Acme0), once the sync has stored it.
    deadline=$((SECONDS + 300))
    while [[ -z $cw_company ]] && ((SECONDS < deadline)); do
        cw_company=$(curl -s -H "Authorization: Bearer ${SERVER_TOKEN[$server]}" \
            "${SERVER_URL[$server]}/v1/company/companies?search=Acme0&rpp=10" | python3 -c '
import json, sys
def walk(v):
    if isinstance(v, dict):
        if v.get("cw_CompanyId") == 1:
            print(v["id"]); sys.exit()
        for x in v.values(): walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
try: walk(json.load(sys.stdin))
except ValueError: pass') || true
        [[ -n $cw_company ]] || sleep 0.5
    done
    if [[ -z $cw_company ]]; then
        echo "bench: warning: $server did not sync ConnectWise company 1 within 300 s; no ticket rows" >&2
        return 0
    fi
    local note
    for note in false true; do
        type_id=$(post_id "$server" /v1/credential-type/credential-types \
            "{\"name\":\"AWS (ticket, note $note)\",\"fields\":$aws_fields,\"revealPolicy\":{\"require\":\"ticket\",\"ticketNote\":$note}}") ||
            die "$server: cannot create the ticket-policy type"
        SERVER_IDS["$server|$([[ $note == true ]] && echo NCID || echo TCID)"]=$(post_id "$server" /v1/credential/credentials \
            "{\"name\":\"AWS ticket $note\",\"typeId\":\"$type_id\",\"companyId\":\"$cw_company\",\"fields\":$aws_values}") ||
            die "$server: cannot create the ticket-policy credential"
    done
}

# The stand-in's count of ticket notes posted to it.
notes_posted() { curl -s "http://127.0.0.1:${SERVER_CW_PORT[$1]}/bench/notes" | sed -E 's/.*"count": *([0-9]+).*/\1/'; }

# After a row whose reveals queue ticket notes: waits until the stand-in has received no note
# for 2 s (company-sync posts them in the background, at most a batch of 50 a second once the
# reveals stop), at most BENCH_NOTES_WAIT seconds, and notes how far the queue had drained.
BENCH_NOTES_WAIT=${BENCH_NOTES_WAIT:-20}
BENCH_NOTE_ROWS=${BENCH_NOTE_ROWS:-0}
NOTES_REPORT=()
wait_notes_drained() {
    local server=$1 name=$2 before=$3 reveals=$4 first last now stable=0 start=$SECONDS state
    first=$(notes_posted "$server") last=$first
    while ((stable < 4 && SECONDS - start < BENCH_NOTES_WAIT)); do
        sleep 0.5
        now=$(notes_posted "$server")
        if [[ $now == "$last" ]]; then stable=$((stable + 1)); else stable=0 last=$now; fi
    done
    if ((stable >= 4)); then
        state="drained ≈ $((SECONDS - start > 2 ? SECONDS - start - 2 : 0)) s after the row"
    else
        state="still draining after ${BENCH_NOTES_WAIT} s ($((last - first)) posted in that time)"
    fi
    NOTES_REPORT+=("$name: $reveals measured reveals (plus the warm-up's); $((last - before)) notes posted to the stand-in; $state")
}

# The mesh: nats-server and FerretDB (from the test tools), then one process per component.
# BENCH_MESH_AUTH=1 (default) runs NATS with the configuration `ttscm mesh init` generates (one
# nkey user per component with its permissions) and every component with its own credentials
# and principal key (signed principals); 0 runs NATS open, as before issue 17 (only binaries
# from before it start that way). BENCH_MESH_TLS=1 adds TLS (a throwaway CA made with openssl).
BENCH_MESH_AUTH=${BENCH_MESH_AUTH:-1}
BENCH_MESH_TLS=${BENCH_MESH_TLS:-0}
start_mesh() {
    local nats ferretdb nats_port fdb_port component signing vault_key scheme=nats tls_env="" tls_arg=()
    nats=$(tests/tools/nats-server.sh) ferretdb=$(tests/tools/ferretdb.sh)
    free_port; nats_port=$PORT
    if [[ $BENCH_MESH_TLS == 1 ]]; then
        local pki="$TMP_DIR/pki"
        mkdir -p "$pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=bench-ca \
            -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
            -keyout "$pki/tls.key" -out "$pki/tls.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$pki/ext"
        openssl x509 -req -in "$pki/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 1 \
            -extfile "$pki/ext" -out "$pki/tls.crt" 2>/dev/null
        scheme=tls tls_arg=(--tls-dir "$pki")
        tls_env="TTSCM_NATS__TLS_CA=$pki/ca.crt TTSCM_NATS__TLS_REQUIRED=true"
    fi
    if [[ $BENCH_MESH_AUTH == 1 ]]; then
        "$TTSCM_BIN" mesh init --out "$TMP_DIR/mesh" "${tls_arg[@]}" >/dev/null 2>&1 || die "ttscm mesh init failed"
        sed -e "s|^listen: .*|listen: 127.0.0.1:$nats_port|" -e "s|store_dir: \"/data\"|store_dir: \"$TMP_DIR/nats\"|" \
            -e '/^http: /d' ${BENCH_NATS_SED:-} "$TMP_DIR/mesh/nats.conf" >"$TMP_DIR/nats.conf"
        if [[ ${BENCH_MESH_OPEN_NATS:-0} == 1 ]]; then
            "$nats" -a 127.0.0.1 -p "$nats_port" -js -sd "$TMP_DIR/nats" >"$TMP_DIR/nats.log" 2>&1 &
        else
            "$nats" -c "$TMP_DIR/nats.conf" >"$TMP_DIR/nats.log" 2>&1 &
        fi
    else
        "$nats" -a 127.0.0.1 -p "$nats_port" -js -sd "$TMP_DIR/nats" >"$TMP_DIR/nats.log" 2>&1 &
    fi
    track_pid $!
    free_port; fdb_port=$PORT
    mkdir -p "$TMP_DIR/ferretdb"
    # synchronous=NORMAL: a write is acknowledged once in SQLite's WAL, not after an fsync each,
    # like MongoDB's default write concern (w:1, journal flushed every 100 ms).
    "$ferretdb" --handler=sqlite --sqlite-url="file:$TMP_DIR/ferretdb/?_pragma=synchronous(normal)" --listen-addr="127.0.0.1:$fdb_port" \
        --telemetry=disable --state-dir=- --debug-addr=- --log-level=error >"$TMP_DIR/ferretdb.log" 2>&1 &
    track_pid $!
    signing=$("$TTSCM_BIN" keys signing-key) vault_key=$("$TTSCM_BIN" keys vault-key --kid v1)
    checkpoint_key=$("$TTSCM_BIN" keys checkpoint-key)
    SERVER_ENV[mesh]="TTSCM_NATS_URL=$scheme://127.0.0.1:$nats_port TTSCM_MONGODB_URI=mongodb://127.0.0.1:$fdb_port/ TTSCM_MONGODB_DATABASE=bench TTSCM_IDENTITY__SIGNING_KEY=$signing TTSCM_VAULT__KEYS=$vault_key TTSCM_VAULT__CHECKPOINT_KEY=$checkpoint_key TTSCM_LOG=warn $tls_env"
    SERVER_LOG[mesh]="$TMP_DIR/mesh.log"
    # company-sync talks to a stand-in of its own with BENCH_MESH_COMPANIES companies (the ticket
    # rows need a synced company; the mesh's sync is not measured).
    free_port; SERVER_CW_PORT[mesh]=$PORT
    python3 bench/connectwise_fake.py "$PORT" "${BENCH_MESH_COMPANIES:-20}" >"$TMP_DIR/cw-mesh.log" 2>&1 &
    SERVER_PID[cw-mesh]=$!
    SERVER_LOG[cw-mesh]="$TMP_DIR/cw-mesh.log"
    track_pid $!
    wait_ready cw-mesh "http://127.0.0.1:$PORT/bench/notes" 200
    local cw_env="TTSCM_CONNECTWISE__SITE=http://127.0.0.1:$PORT TTSCM_CONNECTWISE__CODEBASE=v4_6_release/
        TTSCM_CONNECTWISE__COMPANY_ID=bench TTSCM_CONNECTWISE__PUBLIC_KEY=pub TTSCM_CONNECTWISE__PRIVATE_KEY=priv
        TTSCM_CONNECTWISE__CLIENT_ID=00000000-0000-0000-0000-000000000000
        TTSCM_CONNECTWISE__TICKET_CACHE_SECS=${BENCH_TICKET_CACHE_SECS:-3600}"
    free_port
    SERVER_URL[mesh]="http://127.0.0.1:$PORT"
    for component in identity company-sync credential vault webhook edge; do
        local own=""
        [[ $component == company-sync ]] && own=$cw_env
        if [[ $BENCH_MESH_AUTH == 1 ]]; then
            own+=" "$(grep -hv '^#' "$TMP_DIR/mesh/mesh.env" "$TMP_DIR/mesh/$component.env" | tr '\n' ' ')
        fi
        env ${SERVER_ENV[mesh]} $own TTSCM_LISTEN_ADDR="127.0.0.1:$PORT" "$TTSCM_BIN" serve --only "$component" >>"${SERVER_LOG[mesh]}" 2>&1 &
        track_pid $!
        [[ $component == edge ]] && SERVER_PID[mesh]=$!
    done
    wait_ready mesh "${SERVER_URL[mesh]}/readyz" 200
    # The command records its action on the audit chain through the audit stream, so it runs
    # with identity's settings (its NATS user and keys), as an operator runs it in identity's pod.
    local identity_own=""
    if [[ $BENCH_MESH_AUTH == 1 ]]; then
        identity_own=$(grep -hv '^#' "$TMP_DIR/mesh/mesh.env" "$TMP_DIR/mesh/identity.env" | tr '\n' ' ')
    fi
    SERVER_TOKEN[mesh]=$(env ${SERVER_ENV[mesh]} $identity_own "$TTSCM_BIN" token create --name bench --role admin 2>"$TMP_DIR/token.log") ||
        die "mesh token create failed: $(cat "$TMP_DIR/token.log")"
}

# A ConnectWise stand-in with BENCH_COMPANIES companies: the embedded ttscm syncs them at start
# (measured below), and the search rows run over them.
BENCH_COMPANIES=${BENCH_COMPANIES:-10000}
start_connectwise() {
    free_port
    CW_PORT=$PORT
    SERVER_LOG[cw]="$TMP_DIR/cw.log"
    python3 bench/connectwise_fake.py "$CW_PORT" "$BENCH_COMPANIES" >"${SERVER_LOG[cw]}" 2>&1 &
    SERVER_PID[cw]=$!
    track_pid $!
    wait_ready cw "http://127.0.0.1:$CW_PORT/v4_6_release/apis/3.0/company/companies?page=1" 200
    # The stand-in's own serving time for every page: the floor under the sync's time.
    CW_SERVE_SECS=$(python3 - "$CW_PORT" <<'PY'
import sys, time, urllib.request
start, url = time.monotonic(), f"http://127.0.0.1:{sys.argv[1]}/v4_6_release/apis/3.0/company/companies?page=1&pageSize=1000"
while url:
    with urllib.request.urlopen(url) as r:
        r.read()
        link = r.headers.get("link") or ""
        url = link[1:link.index(">")] if 'rel="next"' in link else None
print(f"{time.monotonic() - start:.2f}")
PY
)
    export TTSCM_CONNECTWISE__SITE="http://127.0.0.1:$CW_PORT" TTSCM_CONNECTWISE__CODEBASE="v4_6_release/" \
        TTSCM_CONNECTWISE__COMPANY_ID=bench TTSCM_CONNECTWISE__PUBLIC_KEY=pub TTSCM_CONNECTWISE__PRIVATE_KEY=priv \
        TTSCM_CONNECTWISE__CLIENT_ID=00000000-0000-0000-0000-000000000000
    # Ticket checks reuse ConnectWise's answer this long: the ticket rows measure a warm cache.
    export TTSCM_CONNECTWISE__TICKET_CACHE_SECS=${BENCH_TICKET_CACHE_SECS:-3600}
    SERVER_CW_PORT[ttscm]=$CW_PORT
}

# Waits for the start-up sync of the embedded ttscm and reads its duration from the report.
measure_sync() {
    local deadline=$((SECONDS + 300)) status
    while ((SECONDS < deadline)); do
        status=$(curl -s -H "Authorization: Bearer ${SERVER_TOKEN[ttscm]}" "${SERVER_URL[ttscm]}/v1/company/sync")
        if [[ $status == *'"finishedAt"'* ]]; then
            SYNC_REPORT=$(python3 -c '
import json, sys
from datetime import datetime
last = json.loads(sys.argv[1])["data"]["last"]
took = datetime.fromisoformat(last["finishedAt"].replace("Z", "+00:00")) - datetime.fromisoformat(last["startedAt"].replace("Z", "+00:00"))
print("%.2f s (fetched %s, created %s, error %s)" % (took.total_seconds(), last["fetched"], last["created"], last["error"]))
' "$status")
            return
        fi
        sleep 0.2
    done
    SYNC_REPORT="did not finish within 300 s"
}

start_baseline
if ((!STANDIN)); then
    start_connectwise
fi
start_ttscm
if ((!STANDIN)); then
    # Only the embedded server syncs: the CLI calls and the mesh start without ConnectWise.
    unset TTSCM_CONNECTWISE__SITE TTSCM_CONNECTWISE__CODEBASE TTSCM_CONNECTWISE__COMPANY_ID \
        TTSCM_CONNECTWISE__PUBLIC_KEY TTSCM_CONNECTWISE__PRIVATE_KEY TTSCM_CONNECTWISE__CLIENT_ID
    measure_sync
fi
if ((!STANDIN)); then
    SERVER_ENV[ttscm]="TTSCM_DATA_DIR=$TMP_DIR/ttscm-data TTSCM_LOG=warn"
    seed ttscm
    sign_in_user ttscm
    if ((BENCH_MESH)); then
        start_mesh
        seed mesh
    fi
fi

sleep 1 # let startup work settle before reading the idle footprint
IDLE_RSS_TTSCM=$(rss_kib "${SERVER_PID[ttscm]}" VmRSS)
IDLE_RSS_BASELINE=$(rss_kib "${SERVER_PID[baseline]}" VmRSS)
BUSY_PCT=$(cpu_busy_pct)
if ((BUSY_PCT > BENCH_BUSY_WARN)); then
    echo "bench: warning: the CPUs were ${BUSY_PCT}% busy just before measuring; other work on" \
        "this machine (a cargo build?) skews the numbers" >&2
fi

# Pre-flight: every target answers its expected status once (routing, auth, the right server).
for row in "${TARGETS[@]}"; do
    IFS='|' read -r server name path auth _ expect script <<<"$row"
    server_started "$server" || continue
    resolve_path "$server" "$path" || continue
    path=$RESOLVED
    [[ -n ${script:-} ]] && continue # writes are checked by their wrk run's status counts
    curl_args=(-s -o "$TMP_DIR/preflight.body" -w '%{http_code}' --max-time 5)
    if [[ $auth == 1 ]]; then
        curl_args+=(-H "Authorization: Bearer ${SERVER_TOKEN[$server]}")
    elif [[ $auth == user ]]; then
        [[ -n ${SERVER_USER_TOKEN[$server]:-} ]] || continue
        curl_args+=(-H "Authorization: Bearer ${SERVER_USER_TOKEN[$server]}")
    fi
    code=$(curl "${curl_args[@]}" "${SERVER_URL[$server]}$path" || true)
    [[ $code == "$expect" ]] ||
        die "$name: GET $path answered ${code:-nothing}, expected $expect;" \
            "body: $(head -c 300 "$TMP_DIR/preflight.body" 2>/dev/null)"
done

# ---------------------------------------------------------------------------------------------
# Measure
# ---------------------------------------------------------------------------------------------
declare -A RPS=() PAIRED_RPS=() BASELINE_ROW=()
RESULTS=() # name|conns|server|baseline_name|rps|p50|p99|cpu_us|note
for row in "${TARGETS[@]}"; do
    IFS='|' read -r server name path _ <<<"$row"
    [[ $server == baseline ]] && BASELINE_ROW[$name]="$server|$path"
done
FAILURES=()
BUSY_ROWS=()
for conns in $BENCH_CONNS; do
    threads=1
    pin=()
    if ((conns > 1)); then
        threads=$((conns < BENCH_WRK_THREADS ? conns : BENCH_WRK_THREADS))
    else
        pin=("${WRK_PIN[@]}")
    fi
    for row in "${TARGETS[@]}"; do
        IFS='|' read -r server name path auth baseline_name expect script <<<"$row"
        server_started "$server" || continue
        [[ -n $BENCH_ROWS && ! $name =~ $BENCH_ROWS ]] && continue
        resolve_path "$server" "$path" || continue
        path=$RESOLVED
        # Their notes are posted for minutes after the row, loading the rows after it.
        [[ $name == *note\)* && $BENCH_NOTE_ROWS != 1 ]] && continue
        url="${SERVER_URL[$server]}$path"
        if [[ $auth == user || $auth == refresh ]]; then
            [[ -n ${SERVER_USER_TOKEN[$server]:-} ]] || continue
        fi
        # A refresh chain is strictly sequential: one connection.
        [[ $auth == refresh ]] && ((conns > 1)) && continue
        # A fresh access token per row: one from the start would expire (15 minutes) before the
        # last rows of a paired, 3-run bench.
        [[ $auth == user ]] && sign_in_user "$server"
        wrk_cmd=(env BENCH_CREATE_BODY="${SERVER_BODY[$server]:-}" BENCH_REFRESH_FILE="${SERVER_REFRESH_FILE[$server]:-}"
            "${pin[@]}" wrk -t"$threads" -c"$conns")
        if [[ -n ${script:-} ]]; then
            wrk_cmd+=(-s "$script")
        fi
        if [[ $auth == 1 ]]; then
            wrk_cmd+=(-H "Authorization: Bearer ${SERVER_TOKEN[$server]}")
        elif [[ $auth == user ]]; then
            wrk_cmd+=(-H "Authorization: Bearer ${SERVER_USER_TOKEN[$server]}")
        fi
        echo "bench: $name, $conns connection(s), $threads wrk thread(s):" \
            "${BENCH_WARMUP_SECS}s warm-up + ${BENCH_RUNS} × ${BENCH_SECS}s" >&2
        [[ $auth == refresh ]] && renew_refresh_session "$server"
        notes_before=
        [[ $name == *note\)* && -n ${SERVER_CW_PORT[$server]:-} ]] && notes_before=$(notes_posted "$server")
        "${wrk_cmd[@]}" -d"${BENCH_WARMUP_SECS}s" "$url" >/dev/null

        runs="$TMP_DIR/runs.txt"
        : >"$runs"
        # The paired baseline: the same wrk settings against the baseline row's route.
        paired_cmd=()
        paired_runs="$TMP_DIR/paired.txt"
        : >"$paired_runs"
        if ((BENCH_PAIRED)) && [[ $server != baseline && -n $baseline_name && -n ${BASELINE_ROW[$baseline_name]:-} ]]; then
            IFS='|' read -r paired_server paired_path <<<"${BASELINE_ROW[$baseline_name]}"
            if server_started "$paired_server"; then
                paired_cmd=("${pin[@]}" wrk -t"$threads" -c"$conns" -d"${BENCH_SECS}s" --latency
                    "${SERVER_URL[$paired_server]}$paired_path")
            fi
        fi
        paired_ticks0=0
        [[ ${#paired_cmd[@]} -gt 0 ]] && paired_ticks0=$(proc_ticks "${SERVER_PID[$paired_server]}")
        requests_all=0 non2xx_all=0 errors_all=0
        server_ticks0=$(proc_ticks "${SERVER_PID[$server]}")
        read -r busy0 total0 < <(stat_ticks)
        times >"$TMP_DIR/times0"
        for ((run = 0; run < BENCH_RUNS; run++)); do
            out="$TMP_DIR/wrk.txt"
            if ((${#paired_cmd[@]})); then
                "${paired_cmd[@]}" >"$out"
                parsed=$(parse_wrk <"$out") || die "cannot parse wrk output for the baseline of $name:"$'\n'"$(cat "$out")"
                echo "$parsed" >>"$paired_runs"
            fi
            [[ $auth == refresh ]] && renew_refresh_session "$server"
            "${wrk_cmd[@]}" -d"${BENCH_SECS}s" --latency "$url" >"$out"
            parsed=$(parse_wrk <"$out") || die "cannot parse wrk output for $name:"$'\n'"$(cat "$out")"
            read -r rps p50 p99 requests non2xx errors <<<"$parsed"
            echo "$parsed" >>"$runs"
            requests_all=$((requests_all + requests))
            non2xx_all=$((non2xx_all + non2xx))
            errors_all=$((errors_all + errors))
        done
        kill -0 "${SERVER_PID[$server]}" 2>/dev/null || die "$server died during the $name runs"
        [[ -n $notes_before ]] && wait_notes_drained "$server" "$name ($conns conns)" "$notes_before" "$requests_all"
        times >"$TMP_DIR/times1"
        read -r busy1 total1 < <(stat_ticks)
        server_ticks=$(($(proc_ticks "${SERVER_PID[$server]}") - server_ticks0))
        paired_ticks=0
        ((${#paired_cmd[@]})) && paired_ticks=$(($(proc_ticks "${SERVER_PID[$paired_server]}") - paired_ticks0))
        wrk_secs=$(children_cpu_delta "$TMP_DIR/times0" "$TMP_DIR/times1")
        # Server CPU per request, and the share of all CPUs that neither the server nor wrk used
        # (other processes, plus some kernel time not charged to either).
        # The paired baseline's server is not "elsewhere" (its wrk is among wrk_secs already).
        read -r cpu_us foreign_pct < <(awk -v st="$server_ticks" -v pt="$paired_ticks" -v hz="$CLK_TCK" \
            -v n="$requests_all" -v w="$wrk_secs" -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" 'BEGIN {
                printf "%.1f %.0f\n", st * 1000000 / hz / n, (t > 0 ? 100 * (b - st - pt - w * hz) / t : 0)
            }')
        # The run with the median req/s (the upper middle one for an even count).
        read -r rps p50 p99 _ < <(sort -n -k1,1 "$runs" | sed -n "$((BENCH_RUNS / 2 + 1))p")
        if [[ -s $paired_runs ]]; then
            read -r paired_rps _ < <(sort -n -k1,1 "$paired_runs" | sed -n "$((BENCH_RUNS / 2 + 1))p")
            PAIRED_RPS["$name|$conns"]=$paired_rps
        fi

        note=""
        if [[ $expect == 2* ]] && ((non2xx_all > 0)); then
            FAILURES+=("$name ($conns conns): $non2xx_all of $requests_all responses were not 2xx")
            note+=" ✗ $non2xx_all non-2xx"
        elif [[ $expect != 2* ]] && ((non2xx_all < requests_all)); then
            FAILURES+=("$name ($conns conns): $((requests_all - non2xx_all)) of $requests_all responses were 2xx/3xx, expected $expect")
            note+=" ✗ $((requests_all - non2xx_all)) 2xx/3xx"
        fi
        if ((errors_all > 0)); then
            FAILURES+=("$name ($conns conns): $errors_all socket errors (wrk: connect/read/write/timeout)")
            note+=" ✗ $errors_all socket errors"
        fi
        if ((foreign_pct > BENCH_BUSY_WARN)); then
            note+=" ⚠ ${foreign_pct}% CPU elsewhere"
            BUSY_ROWS+=("$name ($conns conns)")
        fi
        RPS["$name|$conns"]=$rps
        RESULTS+=("$name|$conns|$server|$baseline_name|$rps|$p50|$p99|$cpu_us|$note")
    done
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ROWS=()
for result in "${RESULTS[@]}"; do
    IFS='|' read -r name conns server baseline_name rps p50 p99 cpu_us note <<<"$result"
    if [[ $server == baseline ]]; then
        ratio="baseline"
    elif [[ -z $baseline_name ]]; then
        ratio="–"
    elif [[ -n ${PAIRED_RPS["$name|$conns"]:-} ]]; then
        ratio="$(awk -v a="$rps" -v b="${PAIRED_RPS["$name|$conns"]}" 'BEGIN { printf "%.1f%%", 100 * a / b }') of $(fmt_int "${PAIRED_RPS["$name|$conns"]}")"
    elif [[ -n ${RPS["$baseline_name|$conns"]:-} ]]; then
        ratio=$(awk -v a="$rps" -v b="${RPS["$baseline_name|$conns"]}" 'BEGIN { printf "%.1f%%", 100 * a / b }')
    else
        ratio="? (no row \"$baseline_name\")"
    fi
    ROWS+=("| $name | $conns | $(fmt_int "$rps") | $(fmt_us "$p50") | $(fmt_us "$p99") | $cpu_us µs | $ratio$note |")
done

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
    commit+=" + uncommitted changes"
fi
mkdir -p "$RESULTS_DIR"
{
    echo "# TTSCM benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Commit $commit; $(nproc) CPUs; $(wrk --version 2>&1 | head -n1 | awk '{ print $1, $2 }')," \
        "wrk and servers on this machine (CPUs ${BUSY_PCT}% busy just before measuring)." \
        "Per cell: ${BENCH_WARMUP_SECS}s warm-up, then ${BENCH_RUNS} × ${BENCH_SECS}s" \
        "(median req/s run shown); wrk -t1 for 1 connection${WRK_PIN[*]:+ (pinned: ${WRK_PIN[*]})}," \
        "-t${BENCH_WRK_THREADS} otherwise."
    if ((BENCH_PAIRED)); then
        echo
        echo "Ratios are paired: before each run of a row, its baseline runs with the same wrk settings;" \
            "\"N% of B\" is the row's median req/s against B, the median of those paired baseline runs."
    fi
    if ((STANDIN)); then
        echo
        echo "**STAND-IN RUN: the \"ttscm\" rows are served by $TTSCM_BIN, not by ttscm.**"
    fi
    echo
    echo "| target | conns | req/s | p50 | p99 | server CPU/req | req/s vs baseline |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Idle RSS after startup: ttscm $(fmt_mib "$IDLE_RSS_TTSCM")" \
        "(warp baseline $(fmt_mib "$IDLE_RSS_BASELINE")). After the load: ttscm" \
        "$(fmt_mib "$(rss_kib "${SERVER_PID[ttscm]}" VmRSS)"), peak $(fmt_mib "$(rss_kib "${SERVER_PID[ttscm]}" VmHWM)")."
    if [[ -n ${SYNC_REPORT:-} ]]; then
        echo
        echo "Full sync of $BENCH_COMPANIES companies from the ConnectWise stand-in (embedded):" \
            "$SYNC_REPORT; the stand-in alone serves every page in ${CW_SERVE_SECS} s."
    fi
    cw_calls=()
    for server in ttscm mesh; do
        [[ -n ${SERVER_CW_PORT[$server]:-} ]] || continue
        cw_calls+=("$server $(curl -s "http://127.0.0.1:${SERVER_CW_PORT[$server]}/bench/calls")")
    done
    if ((${#cw_calls[@]})); then
        echo
        echo "ConnectWise stand-in calls answered (ticket checks reach it only on a ticket-cache miss):" \
            "$(IFS=';'; echo "${cw_calls[*]}" | sed 's/;/; /g')."
    fi
    if ((${#NOTES_REPORT[@]})); then
        echo
        echo "Ticket notes (the \"ticket, note\" rows; company-sync posts them in the background):"
        printf -- '- %s\n' "${NOTES_REPORT[@]}"
    fi
    if ((${#BUSY_ROWS[@]})); then
        echo
        echo "**Other processes used more than ${BENCH_BUSY_WARN}% of the CPUs during ${#BUSY_ROWS[@]} row(s)" \
            "(marked ⚠): those numbers are skewed; rerun on an idle machine.**"
    fi
    if ((${#FAILURES[@]})); then
        echo
        echo "**FAILED:**"
        printf -- '- %s\n' "${FAILURES[@]}"
    fi
} | tee "$RESULTS_DIR/latest.md"

if ((${#FAILURES[@]})); then
    echo "bench: ${#FAILURES[@]} failure(s), see above" >&2
    exit 1
fi
