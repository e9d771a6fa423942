#!/usr/bin/env bash
# Soak: SOAK_SECS of mixed load (bench/soak.lua: reveals, gets, lists, renames, creates and
# deletes) on embedded TTSCM and on the mesh, one after the other. Every SOAK_SAMPLE_SECS it
# samples each process's anonymous and file-backed RSS, open files (/proc/PID/fd), its
# connections to the store (the MongoDB driver's pool, FerretDB's clients and its PostgreSQL
# pool) and threads; it prints per target a table per minute and a verdict: resources flat
# after the first minute (warm-up), last minute's throughput within 5 % of the second's (the
# machine's own swing, which can exceed that, is measured by bench/steadiness.sh). On
# the mesh it also samples the Go processes' live heap (nats-server and FerretDB run with
# GODEBUG=gctrace=1; the heap marked live at each collection) and the JetStream streams' sizes
# (nats-server's monitoring port). The serving process (embedded: the one; mesh: the edge)
# serves /metrics on a port of its own, and the report names the routes whose answers took
# over a second, and every non-2xx answer, by route and status (the request histogram). A
# benchmark, not a test: the verdict is printed, and the exit code is 1 only when the load
# itself failed (non-2xx, socket errors).
# Knobs (environment):
#   SOAK_SECS=600          seconds of load per target (whole minutes; 120 validates the script)
#   SOAK_SAMPLE_SECS=10    seconds per wrk run and sample
#   SOAK_CONNS=32          wrk connections (2 threads)
#   SOAK_TARGETS="embedded mesh"
#   SOAK_CREDENTIALS=20    seeded credentials the reads and renames pick from
#   SOAK_FERRETDB=postgresql  the mesh's FerretDB backend: postgresql (a throw-away cluster from
#                          tests/tools/postgresql.sh; its postmaster is sampled too), or sqlite
#                          (FerretDB 1.24 on SQLite is the bottleneck within minutes: bench/README.md)
#   TTSCM_BIN=path         use this binary instead of building target/release/ttscm
# The mesh is started as bench/run.sh starts it (nats-server with `ttscm mesh init`'s users and
# permissions, FerretDB, six `ttscm serve --only` processes); run.sh is not sourced
# because it measures when run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SOAK_SECS=${SOAK_SECS:-600}
SOAK_SAMPLE_SECS=${SOAK_SAMPLE_SECS:-10}
SOAK_CONNS=${SOAK_CONNS:-32}
SOAK_TARGETS=${SOAK_TARGETS:-"embedded mesh"}
SOAK_CREDENTIALS=${SOAK_CREDENTIALS:-20}
SOAK_FERRETDB=${SOAK_FERRETDB:-postgresql}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
((SOAK_SECS % 60 == 0 && SOAK_SECS >= 120)) || { echo "soak: SOAK_SECS must be whole minutes, at least 120" >&2; exit 64; }
((60 % SOAK_SAMPLE_SECS == 0)) || { echo "soak: SOAK_SAMPLE_SECS must divide 60" >&2; exit 64; }

TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ttscm-soak.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -d $TMP_DIR/pg ]] && tests/tools/postgresql.sh stop "$TMP_DIR/pg"
    rm -rf "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "soak: error: $*" >&2; exit 1; }

PORT=
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { PORT=$p; return; }
    done
    die "no free loopback port"
}

# wait_ready PID URL STATUS LOG
wait_ready() {
    local deadline=$((SECONDS + 60)) code=""
    while ((SECONDS < deadline)); do
        kill -0 "$1" 2>/dev/null || { tail -n 30 "$4" >&2; die "a server exited during startup"; }
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$2" || true)
        [[ $code == "$3" ]] && return
        sleep 0.1
    done
    tail -n 30 "$4" >&2
    die "GET $2 did not answer $3 within 60 s (last: ${code:-none})"
}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y wrk; } >&2
if [[ -z ${TTSCM_BIN:-} ]]; then
    cargo build --release --locked -p ttscm
    TTSCM_BIN="$TARGET_DIR/release/ttscm"
fi

# Per target: URL, TOKEN, ENV (settings for CLI calls), and PROCS ("name=pid ...") to sample.
URL= TOKEN= ENV= PROCS=
# Go processes' stderr (gctrace lines), by name; and nats-server's monitoring URL (mesh only).
declare -A GO_LOGS=()
NATS_MONITOR=
# The serving process's /metrics (TTSCM_METRICS_ADDR).
METRICS_URL=
# Ports of the store's servers (FerretDB's, PostgreSQL's): a process's TCP connections from or
# to them are its store connections (mesh only).
STORE_PORTS=

start_embedded() {
    local data="$TMP_DIR/embedded" pid
    mkdir -p "$data"
    free_port
    URL="http://127.0.0.1:$PORT"
    ENV="TTSCM_DATA_DIR=$data TTSCM_LOG=warn"
    free_port
    METRICS_URL="http://127.0.0.1:$PORT/metrics"
    env $ENV TTSCM_METRICS_ADDR="127.0.0.1:$PORT" TTSCM_LISTEN_ADDR="127.0.0.1:${URL##*:}" \
        "$TTSCM_BIN" serve >"$TMP_DIR/embedded.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" "$URL/healthz" 200 "$TMP_DIR/embedded.log"
    TOKEN=$(env $ENV "$TTSCM_BIN" token create --name soak --role admin 2>"$TMP_DIR/token.log" | head -n 1) ||
        die "token create failed: $(cat "$TMP_DIR/token.log")"
    PROCS="ttscm=$pid"
}

start_mesh() {
    local nats ferretdb nats_port monitor_port fdb_port component own signing vault_key checkpoint_key pid edge
    nats=$(tests/tools/nats-server.sh) ferretdb=$(tests/tools/ferretdb.sh)
    free_port; nats_port=$PORT
    free_port; monitor_port=$PORT
    "$TTSCM_BIN" mesh init --out "$TMP_DIR/mesh" >/dev/null 2>&1 || die "ttscm mesh init failed"
    sed -e "s|^listen: .*|listen: 127.0.0.1:$nats_port|" -e "s|store_dir: \"/data\"|store_dir: \"$TMP_DIR/nats\"|" \
        -e "s|^http: .*|http: 127.0.0.1:$monitor_port|" "$TMP_DIR/mesh/nats.conf" >"$TMP_DIR/nats.conf"
    NATS_MONITOR="http://127.0.0.1:$monitor_port"
    GODEBUG=gctrace=1 "$nats" -c "$TMP_DIR/nats.conf" >"$TMP_DIR/nats.log" 2>&1 &
    PIDS+=($!)
    PROCS="nats-server=$!"
    GO_LOGS[nats-server]=$TMP_DIR/nats.log
    free_port; fdb_port=$PORT
    mkdir -p "$TMP_DIR/ferretdb"
    local handler=(--handler=sqlite "--sqlite-url=file:$TMP_DIR/ferretdb/?_pragma=synchronous(normal)") pg_url
    STORE_PORTS=$fdb_port
    if [[ $SOAK_FERRETDB == postgresql ]]; then
        mkdir -p "$TMP_DIR/pg"
        pg_url=$(tests/tools/postgresql.sh start "$TMP_DIR/pg")
        handler=(--handler=postgresql "--postgresql-url=$pg_url")
        PROCS+=" postgres=$(head -n 1 "$TMP_DIR/pg/pgdata/postmaster.pid")"
        pg_url=${pg_url##*:}
        STORE_PORTS+=" ${pg_url%%/*}"
    fi
    GODEBUG=gctrace=1 "$ferretdb" "${handler[@]}" \
        --listen-addr="127.0.0.1:$fdb_port" --telemetry=disable --state-dir=- --debug-addr=- \
        --log-level=error >"$TMP_DIR/ferretdb.log" 2>&1 &
    PIDS+=($!)
    PROCS+=" ferretdb=$!"
    GO_LOGS[ferretdb]=$TMP_DIR/ferretdb.log
    signing=$("$TTSCM_BIN" keys signing-key) vault_key=$("$TTSCM_BIN" keys vault-key --kid v1)
    checkpoint_key=$("$TTSCM_BIN" keys checkpoint-key)
    ENV="TTSCM_NATS_URL=nats://127.0.0.1:$nats_port TTSCM_MONGODB_URI=mongodb://127.0.0.1:$fdb_port/ TTSCM_MONGODB_DATABASE=soak TTSCM_IDENTITY__SIGNING_KEY=$signing TTSCM_VAULT__KEYS=$vault_key TTSCM_VAULT__CHECKPOINT_KEY=$checkpoint_key TTSCM_LOG=warn"
    free_port
    METRICS_URL="http://127.0.0.1:$PORT/metrics"
    local metrics=$PORT
    free_port
    URL="http://127.0.0.1:$PORT"
    for component in identity company-sync credential vault webhook edge; do
        own=$(grep -hv '^#' "$TMP_DIR/mesh/mesh.env" "$TMP_DIR/mesh/$component.env" | tr '\n' ' ')
        [[ $component == edge ]] && own+=" TTSCM_METRICS_ADDR=127.0.0.1:$metrics"
        env $ENV $own TTSCM_LISTEN_ADDR="127.0.0.1:$PORT" "$TTSCM_BIN" serve --only "$component" >>"$TMP_DIR/mesh.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        PROCS+=" $component=$pid"
        [[ $component == edge ]] && edge=$pid
    done
    wait_ready "$edge" "$URL/readyz" 200 "$TMP_DIR/mesh.log"
    # Commands run with identity's settings (they record on the audit chain through the stream).
    own=$(grep -hv '^#' "$TMP_DIR/mesh/mesh.env" "$TMP_DIR/mesh/identity.env" | tr '\n' ' ')
    ENV+=" $own"
    TOKEN=$(env $ENV "$TTSCM_BIN" token create --name soak --role admin 2>"$TMP_DIR/token.log" | head -n 1) ||
        die "mesh token create failed: $(cat "$TMP_DIR/token.log")"
}

# Two companies (CLI): SOAK_COMPANY with SOAK_CREDENTIALS credentials, and a scratch one the
# creates and deletes go to. Sets SOAK_CIDS, SOAK_COMPANY, SOAK_CREATE_BODY.
seed() {
    local scratch type_id body ids=() id
    api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$URL$1" -d "$2"; }
    SOAK_COMPANY=$(env $ENV "$TTSCM_BIN" company add --name "Soak Co" 2>>"$TMP_DIR/seed.log") || die "company add failed"
    scratch=$(env $ENV "$TTSCM_BIN" company add --name "Soak Scratch" 2>>"$TMP_DIR/seed.log") || die "company add failed"
    type_id=$(api /v1/credential-type/credential-types \
        '{"name":"AWS","fields":[{"id":"accessKeyId","name":"Access Key ID","required":true,"secure":false,"valueType":"plain_text"},{"id":"secretAccessKey","name":"Secret Access Key","required":true,"secure":true,"valueType":"password"}]}' |
        sed -E 's/.*"data":\{"id":"([a-z0-9]+)".*/\1/') || die "cannot create the credential type"
    body='"typeId":"'$type_id'","fields":[{"fieldId":"accessKeyId","value":"AKIAIOSFODNN7EXAMPLE"},{"fieldId":"secretAccessKey","value":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}]}'
    for n in $(seq "$SOAK_CREDENTIALS"); do
        id=$(api /v1/credential/credentials "{\"name\":\"Seeded $n\",\"companyId\":\"$SOAK_COMPANY\",$body" |
            sed -E 's/.*"data":\{"id":"([a-z0-9]+)".*/\1/') || die "cannot create credential $n"
        ids+=("$id")
    done
    SOAK_CIDS=$(IFS=,; echo "${ids[*]}")
    SOAK_SCRATCH=$scratch
    SOAK_CREATE_BODY="{\"name\":\"Scratch\",\"companyId\":\"$scratch\",$body"
}

# tidy: deletes the credentials a run's creates left in the scratch company (creates still in
# flight when wrk stops are never deleted by the mix: ~25 per run), between runs and outside the
# measured window, so the data the load touches keeps its size (FerretDB scans a collection
# per filtered query: a growing scratch company slowed every later minute of the mesh).
tidy() {
    local id
    # The credentials' own ids (an item also names its type and company by id).
    for id in $(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/v1/credential/credentials/company/$SOAK_SCRATCH" |
        python3 -c 'import json, sys; print(" ".join(c["id"] for c in json.load(sys.stdin)["data"]))'); do
        curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $TOKEN" "$URL/v1/credential/credentials/$id"
    done
}

status_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# store_conns PID: the process's TCP sockets from or to one of STORE_PORTS.
store_conns() {
    [[ -n $STORE_PORTS ]] || { echo 0; return; }
    ls -l "/proc/$1/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' |
        awk -v ports="$STORE_PORTS" '
            BEGIN { n = split(ports, p, " "); for (i = 1; i <= n; i++) want[sprintf("%04X", p[i])] = 1 }
            NR == FNR { mine[$1] = 1; next }
            FNR > 1 && ($10 in mine) { split($2, l, ":"); split($3, r, ":"); if ((l[2] in want) || (r[2] in want)) c++ }
            END { print c + 0 }' - "/proc/$1/net/tcp"
}
busy_total() { awk 'NR == 1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# go_heap NAME: KiB marked live at the Go process's last collection (gctrace's "A->B->C MB"), or -.
go_heap() {
    local log=${GO_LOGS[$1]:-}
    [[ -n $log ]] || { echo -; return; }
    grep -a '^gc [0-9]' "$log" | tail -n 1 | sed -nE 's/.* [0-9]+->[0-9]+->([0-9]+) MB.*/\1/p' |
        awk '{ print $1 * 1024 } END { if (NR == 0) print "-" }'
}
# streams: each JetStream stream's messages and bytes ("NAME:messages:bytes ..."), or nothing.
streams() {
    [[ -n $NATS_MONITOR ]] || return 0
    curl -sf --max-time 2 "$NATS_MONITOR/jsz?streams=true" | python3 -c '
import json, sys
try:
    z = json.load(sys.stdin)
except ValueError:
    sys.exit()
for a in z.get("account_details") or []:
    for s in a.get("stream_detail") or []:
        print("%s:%d:%d" % (s["name"], s["state"]["messages"], s["state"]["bytes"]), end=" ")
' || true
}

# probe: each kind of request of the mix once after another, five times; prints the median
# time per kind (idle, before the load), to read the mix's throughput against.
probe() {
    local cid=${SOAK_CIDS%%,*} kind t times
    local -a args
    for kind in reveal get list-types list-company rename create; do
        case $kind in
            reveal) args=("$URL/v1/credential/credentials/$cid/secure-values") ;;
            get) args=("$URL/v1/credential/credentials/$cid") ;;
            list-types) args=("$URL/v1/credential-type/credential-types") ;;
            list-company) args=("$URL/v1/credential/credentials/company/$SOAK_COMPANY") ;;
            rename) args=(-X PATCH -H 'Content-Type: application/json' -d '{"name":"Probe"}' "$URL/v1/credential/credentials/$cid") ;;
            create) args=(-H 'Content-Type: application/json' -d "$SOAK_CREATE_BODY" "$URL/v1/credential/credentials") ;;
        esac
        times=()
        for _ in 1 2 3 4 5; do
            t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H "Authorization: Bearer $TOKEN" "${args[@]}")
            [[ ${t%% *} == 2* ]] || die "probe $kind answered ${t%% *}"
            times+=("${t#* }")
        done
        printf '%s %s ms; ' "$kind" "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p | awk '{ printf "%.1f", $1 * 1000 }')"
    done
    echo
}

# soak TARGET: load, sample, report.
soak() {
    local target=$1 samples="$TMP_DIR/$target.samples" runs=$((SOAK_SECS / SOAK_SAMPLE_SECS)) run out
    local name pid rps requests non2xx errors busy0 total0 busy1 total1 ticks0 ticks1 wrk0 wrk1
    "start_$target"
    seed
    PROBE=$(probe)
    echo "soak: $target: one request of each kind, idle (median of 5): $PROBE" >&2
    echo "soak: $target: ${SOAK_SECS}s of mixed load, $SOAK_CONNS connections, sampled every ${SOAK_SAMPLE_SECS}s" >&2
    : >"$samples"
    for ((run = 1; run <= runs; run++)); do
        read -r busy0 total0 < <(busy_total)
        ticks0=0
        for entry in $PROCS; do ticks0=$((ticks0 + $(proc_ticks "${entry#*=}"))); done
        times >"$TMP_DIR/times0"
        out=$(SOAK_CIDS=$SOAK_CIDS SOAK_COMPANY=$SOAK_COMPANY SOAK_CREATE_BODY=$SOAK_CREATE_BODY SOAK_TOKEN=$TOKEN \
            wrk -t2 -c"$SOAK_CONNS" -d"${SOAK_SAMPLE_SECS}s" -s bench/soak.lua "$URL") || die "wrk failed: $out"
        times >"$TMP_DIR/times1"
        read -r busy1 total1 < <(busy_total)
        ticks1=0
        for entry in $PROCS; do
            pid=${entry#*=}
            kill -0 "$pid" 2>/dev/null || die "$target: ${entry%%=*} died (logs in $TMP_DIR)"
            ticks1=$((ticks1 + $(proc_ticks "$pid")))
        done
        requests=$(awk '/ requests in / { print $1 }' <<<"$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
        errors=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' <<<"$out")
        wrk_secs=$(awk 'function s(v, p) { split(v, p, "m"); return p[1] * 60 + p[2] }
            FNR == 2 { t[FILENAME == ARGV[1]] = s($1) + s($2) } END { printf "%.2f", t[0] - t[1] }' \
            "$TMP_DIR/times0" "$TMP_DIR/times1")
        # Share of all CPUs used by neither the target's processes nor wrk (other work on the host).
        foreign=$(awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" -v p="$((ticks1 - ticks0))" \
            -v w="$wrk_secs" -v hz="$(getconf CLK_TCK)" 'BEGIN { f = t > 0 ? 100 * (b - p - w * hz) / t : 0; printf "%.0f", f < 0 ? 0 : f }')
        line="$run $requests ${non2xx:-0} ${errors:-0} $foreign"
        for entry in $PROCS; do
            pid=${entry#*=}
            line+=" ${entry%%=*}:$(status_field "$pid" RssAnon):$(fd_count "$pid"):$(status_field "$pid" Threads):$(status_field "$pid" RssFile):$(go_heap "${entry%%=*}"):$(store_conns "$pid")"
        done
        echo "$line" >>"$samples"
        echo "$run $(streams)" >>"$samples.streams"
        echo "  $((run * SOAK_SAMPLE_SECS))s: $(awk -v r="$requests" -v s="$SOAK_SAMPLE_SECS" 'BEGIN { printf "%.0f", r / s }') req/s," \
            "non-2xx ${non2xx:-0}, other work ${foreign}% CPU" >&2
        tidy
    done
    curl -sf --max-time 5 "$METRICS_URL" >"$TMP_DIR/$target.metrics" || echo "soak: $target: no /metrics" >&2
    report "$target" "$samples"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

# report TARGET SAMPLES: a row per minute (throughput, and each process's RSS / fds / threads at
# the minute's last sample), the streams, slow and failed answers, then the verdict.
FAILED=()
report() {
    local target=$1 samples=$2 per_min=$((60 / SOAK_SAMPLE_SECS))
    echo
    local backend=""
    [[ $target == mesh ]] && backend=", FerretDB on $SOAK_FERRETDB"
    echo "### Soak: $target$backend, ${SOAK_SECS}s, $SOAK_CONNS connections ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    awk -v per="$per_min" -v secs="$SOAK_SAMPLE_SECS" '
        {
            m = int(($1 - 1) / per) + 1
            req[m] += $2; bad[m] += $3 + $4; foreign[m] += $5; n[m]++
            for (i = 6; i <= NF; i++) { split($i, p, ":"); name[i] = p[1]; last[m, i] = p[2] ":" p[3] ":" p[4] ":" p[5] ":" p[6] ":" p[7] }
            procs = NF; minutes = m
        }
        END {
            printf "| minute | req/s | non-2xx + socket errors | other work (CPU %%) |"
            for (i = 6; i <= procs; i++) printf " %s anon RSS / fds (store connections) / threads (file-backed RSS) |", name[i]
            printf "\n|---|---|---|---|"
            for (i = 6; i <= procs; i++) printf "---|"
            printf "\n"
            for (m = 1; m <= minutes; m++) {
                printf "| %d | %.0f | %d | %.0f |", m, req[m] / (n[m] * secs), bad[m], foreign[m] / n[m]
                for (i = 6; i <= procs; i++) {
                    split(last[m, i], p, ":")
                    printf " %.1f MiB / %d (%d) / %d (%.0f MiB)", p[1] / 1024, p[2], p[6], p[3], p[4] / 1024
                    printf "%s |", p[5] == "-" ? "" : sprintf("; Go live heap %d MiB", p[5] / 1024)
                }
                printf "\n"
            }
        }' "$samples"
    if [[ -s $samples.streams ]] && grep -q : "$samples.streams"; then
        echo
        echo "JetStream streams at each minute's end (messages, MiB on disk):"
        awk -v per="$per_min" '$1 % per == 0 {
            printf "  minute %d:", $1 / per
            for (i = 2; i <= NF; i++) { split($i, s, ":"); printf " %s %d (%.1f MiB)", s[1], s[2], s[3] / 1048576 }
            printf "\n"
        }' "$samples.streams"
    fi
    echo
    echo "Idle, one request of each kind (median of 5): $PROBE"
    # Answers over 1 s by route and status (the request histogram's buckets: 1 s, 2.5 s, 5 s).
    if [[ -s $TMP_DIR/$target.metrics ]]; then
        echo
        awk '/^ttscm_http_request_duration_seconds_(bucket|count)\{/ {
            key = $1; sub(/,?le="[^"]*"/, "", key); sub(/_(bucket|count)\{/, "{", key)
            if ($1 ~ /_count\{/) { count[key] = $2; next }
            match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
            if (le + 0 == 1) over1[key] = $2
            if (le + 0 == 2.5) over25[key] = $2
        }
        END {
            for (key in count) if (count[key] - over1[key] > 0) {
                printf "  %s: %d of %d answers over 1 s, %d over 2.5 s\n", key, count[key] - over1[key], count[key], count[key] - over25[key]
                slow = 1
            }
            if (!slow) print "  no answer took over 1 s"
        }' "$TMP_DIR/$target.metrics" | { echo "Answers over 1 s (the request histogram, whole run including seeding):"; cat; }
        echo
        echo "Answers other than 2xx, and bus requests that failed (whole run including seeding):"
        awk '/^ttscm_http_requests_total\{/ && !/status="2[0-9][0-9]"/ && $2 > 0 { printf "  %s %d\n", $1, $2; n++ }
            /^ttscm_bus_request_errors_total\{/ && $2 > 0 { printf "  %s %d\n", $1, $2; n++ }
            END { if (!n) print "  none" }' "$TMP_DIR/$target.metrics"
    fi
    echo
    # Verdict. From the end of minute 1 (warm-up) to the end, each resource's trend — the
    # least-squares slope through every sample, times the time they span — must stay below a
    # bound: anonymous RSS (the heap: what a leak grows) under 10 % of its mean or 8 MiB, open
    # files other than store connections and threads at most 2. A trend, not the last sample
    # against the first: a bounded swing (a Go heap between collections, a pool's idle
    # connection) is noise to a line through 50 samples, while a leak of 1 MiB a minute shows.
    # File-backed RSS is shown, not judged: it is the page cache of files the process maps —
    # the embedded store's SQLite file (mmap_size 256 MiB), which grows with the data kept
    # (credential versions, the audit log is a separate file) — and the kernel reclaims it.
    # A Go process (nats-server, FerretDB) is judged by its live heap instead of its anonymous
    # RSS: the Go runtime lets the heap grow to twice the live heap before it collects
    # (GOGC=100) and returns freed pages to the kernel lazily, so its RSS swings by up to the
    # live heap again without anything growing; the live heap is what a leak grows.
    # Store connections are judged apart: a TTSCM process's are its MongoDB driver's pool,
    # opened as concurrency first needs them and bounded by maxPoolSize (10 by default), and the
    # driver's two monitoring connections (heartbeat, round-trip time), so their peak must stay
    # within 12; FerretDB's and PostgreSQL's follow their clients (shown, not judged).
    # Throughput: minute N within 5 % of minute 2.
    awk -v per="$per_min" -v secs="$SOAK_SAMPLE_SECS" '
        function fit(key, x, y) { n[key]++; sx[key] += x; sy[key] += y; sxx[key] += x * x; sxy[key] += x * y }
        function trend(key, span,   d) {
            d = n[key] * sxx[key] - sx[key] * sx[key]
            return d > 0 ? (n[key] * sxy[key] - sx[key] * sy[key]) / d * span : 0
        }
        {
            m = int(($1 - 1) / per) + 1
            req[m] += $2; bad += $3 + $4; minutes = m
            if ($1 < per) next
            if (first == "") first = $1
            last = $1
            for (i = 6; i <= NF; i++) {
                split($i, p, ":"); name[i] = p[1]; procs = NF; go[i] = p[6] != "-"
                fit("mem" i, $1, go[i] ? p[6] : p[2])
                fit("fd" i, $1, p[3] - p[7])
                fit("th" i, $1, p[4])
                if (p[7] > peak[i]) peak[i] = p[7]
                if ($1 == per) conns0[i] = p[7]
            }
        }
        END {
            flat = 1; growth = ""
            span = last - first
            for (i = 6; i <= procs; i++) {
                mem = trend("mem" i, span); fd = trend("fd" i, span); th = trend("th" i, span)
                mean = sy["mem" i] / n["mem" i]
                if (mem > 8192 && mem > mean / 10) flat = 0
                if (fd > 2 || th > 2) flat = 0
                ttscm = name[i] != "nats-server" && name[i] != "ferretdb" && name[i] != "postgres"
                if (ttscm && peak[i] > 12) flat = 0
                growth = growth sprintf("%s%s %+.1f MiB %s (mean %.1f), %+.1f other fds, %+.1f threads, store connections %d → peak %d",
                    growth == "" ? "" : "; ", name[i], mem / 1024, go[i] ? "Go live heap" : "anon RSS", mean / 1024, fd, th, conns0[i], peak[i])
            }
            ratio = 100 * req[minutes] / req[2]
            printf "Verdict: trends after warm-up (end of minute 1 → end): %s — %s. ", growth, flat ? "flat" : "**NOT flat**"
            printf "Last minute %.0f req/s = %.1f %% of minute 2 (%.0f req/s): %s.", req[minutes] / (per * secs), ratio, req[2] / (per * secs), (ratio >= 95 && ratio <= 105) ? "within 5 %" : "**outside 5 %**"
            if (bad > 0) printf " **%d non-2xx responses or socket errors.**", bad
            printf "\n"
        }' "$samples"
    if awk '{ b += $3 + $4 } END { exit !(b > 0) }' "$samples"; then
        FAILED+=("$target")
    fi
}

for target in $SOAK_TARGETS; do
    case $target in
        embedded | mesh) soak "$target" ;;
        *) die "unknown target $target (embedded or mesh)" ;;
    esac
done
if ((${#FAILED[@]})); then
    echo "soak: requests failed on: ${FAILED[*]}" >&2
    exit 1
fi
