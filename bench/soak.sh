#!/usr/bin/env bash
# Soak: SOAK_SECS of mixed load (bench/soak.lua: reveals, gets, lists, renames, creates and
# deletes) on embedded TTSCM and on the mesh, one after the other. Every SOAK_SAMPLE_SECS it
# samples each process's anonymous and file-backed RSS, open files (/proc/PID/fd) and threads; it prints per
# target a table per minute and a verdict: resources flat after the first minute (warm-up),
# last minute's throughput within 5 % of the second's. A benchmark, not a test: the verdict is
# printed, and the exit code is 1 only when the load itself failed (non-2xx, socket errors).
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

start_embedded() {
    local data="$TMP_DIR/embedded" pid
    mkdir -p "$data"
    free_port
    URL="http://127.0.0.1:$PORT"
    ENV="TTSCM_DATA_DIR=$data TTSCM_LOG=warn"
    env $ENV TTSCM_LISTEN_ADDR="127.0.0.1:$PORT" "$TTSCM_BIN" serve >"$TMP_DIR/embedded.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" "$URL/healthz" 200 "$TMP_DIR/embedded.log"
    TOKEN=$(env $ENV "$TTSCM_BIN" token create --name soak --role admin 2>"$TMP_DIR/token.log" | head -n 1) ||
        die "token create failed: $(cat "$TMP_DIR/token.log")"
    PROCS="ttscm=$pid"
}

start_mesh() {
    local nats ferretdb nats_port fdb_port component own signing vault_key checkpoint_key pid edge
    nats=$(tests/tools/nats-server.sh) ferretdb=$(tests/tools/ferretdb.sh)
    free_port; nats_port=$PORT
    "$TTSCM_BIN" mesh init --out "$TMP_DIR/mesh" >/dev/null 2>&1 || die "ttscm mesh init failed"
    sed -e "s|^listen: .*|listen: 127.0.0.1:$nats_port|" -e "s|store_dir: \"/data\"|store_dir: \"$TMP_DIR/nats\"|" \
        -e '/^http: /d' "$TMP_DIR/mesh/nats.conf" >"$TMP_DIR/nats.conf"
    "$nats" -c "$TMP_DIR/nats.conf" >"$TMP_DIR/nats.log" 2>&1 &
    PIDS+=($!)
    PROCS="nats-server=$!"
    free_port; fdb_port=$PORT
    mkdir -p "$TMP_DIR/ferretdb"
    local handler=(--handler=sqlite "--sqlite-url=file:$TMP_DIR/ferretdb/?_pragma=synchronous(normal)")
    if [[ $SOAK_FERRETDB == postgresql ]]; then
        mkdir -p "$TMP_DIR/pg"
        handler=(--handler=postgresql "--postgresql-url=$(tests/tools/postgresql.sh start "$TMP_DIR/pg")")
        PROCS+=" postgres=$(head -n 1 "$TMP_DIR/pg/pgdata/postmaster.pid")"
    fi
    "$ferretdb" "${handler[@]}" \
        --listen-addr="127.0.0.1:$fdb_port" --telemetry=disable --state-dir=- --debug-addr=- \
        --log-level=error >"$TMP_DIR/ferretdb.log" 2>&1 &
    PIDS+=($!)
    PROCS+=" ferretdb=$!"
    signing=$("$TTSCM_BIN" keys signing-key) vault_key=$("$TTSCM_BIN" keys vault-key --kid v1)
    checkpoint_key=$("$TTSCM_BIN" keys checkpoint-key)
    ENV="TTSCM_NATS_URL=nats://127.0.0.1:$nats_port TTSCM_MONGODB_URI=mongodb://127.0.0.1:$fdb_port/ TTSCM_MONGODB_DATABASE=soak TTSCM_IDENTITY__SIGNING_KEY=$signing TTSCM_VAULT__KEYS=$vault_key TTSCM_VAULT__CHECKPOINT_KEY=$checkpoint_key TTSCM_LOG=warn"
    free_port
    URL="http://127.0.0.1:$PORT"
    for component in identity company-sync credential vault webhook edge; do
        own=$(grep -hv '^#' "$TMP_DIR/mesh/mesh.env" "$TMP_DIR/mesh/$component.env" | tr '\n' ' ')
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
    for id in $(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/v1/credential/credentials/company/$SOAK_SCRATCH" |
        grep -o '"id":"[a-z0-9]*"' | cut -d'"' -f4); do
        curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $TOKEN" "$URL/v1/credential/credentials/$id"
    done
}

status_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
busy_total() { awk 'NR == 1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

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
            line+=" ${entry%%=*}:$(status_field "$pid" RssAnon):$(fd_count "$pid"):$(status_field "$pid" Threads):$(status_field "$pid" RssFile)"
        done
        echo "$line" >>"$samples"
        echo "  $((run * SOAK_SAMPLE_SECS))s: $(awk -v r="$requests" -v s="$SOAK_SAMPLE_SECS" 'BEGIN { printf "%.0f", r / s }') req/s," \
            "non-2xx ${non2xx:-0}, other work ${foreign}% CPU" >&2
        tidy
    done
    report "$target" "$samples"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

# report TARGET SAMPLES: a row per minute (throughput, and each process's RSS / fds / threads at
# the minute's last sample), then the verdict.
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
            for (i = 6; i <= NF; i++) { split($i, p, ":"); name[i] = p[1]; last[m, i] = p[2] ":" p[3] ":" p[4] ":" p[5] }
            procs = NF; minutes = m
        }
        END {
            printf "| minute | req/s | non-2xx + socket errors | other work (CPU %%) |"
            for (i = 6; i <= procs; i++) printf " %s anon RSS / fds / threads (file-backed RSS) |", name[i]
            printf "\n|---|---|---|---|"
            for (i = 6; i <= procs; i++) printf "---|"
            printf "\n"
            for (m = 1; m <= minutes; m++) {
                printf "| %d | %.0f | %d | %.0f |", m, req[m] / (n[m] * secs), bad[m], foreign[m] / n[m]
                for (i = 6; i <= procs; i++) {
                    split(last[m, i], p, ":")
                    printf " %.1f MiB / %d / %d (%.0f MiB) |", p[1] / 1024, p[2], p[3], p[4] / 1024
                }
                printf "\n"
            }
        }' "$samples"
    echo
    echo "Idle, one request of each kind (median of 5): $PROBE"
    echo
    # Verdict. Flat: from the end of minute 1 (warm-up) to the end, anonymous RSS (the heap:
    # what a leak grows) grew less than 10 % (and 8 MiB), open files and threads by at most 2.
    # File-backed RSS is shown, not judged: it is the page cache of files the process maps —
    # the embedded store's SQLite file (mmap_size 256 MiB), which grows with the data kept
    # (credential versions, the audit log is a separate file) — and the kernel reclaims it.
    # Throughput: minute N within 5 % of minute 2.
    awk -v per="$per_min" -v secs="$SOAK_SAMPLE_SECS" '
        {
            m = int(($1 - 1) / per) + 1
            req[m] += $2; bad += $3 + $4; minutes = m
            for (i = 6; i <= NF; i++) {
                split($i, p, ":"); name[i] = p[1]; procs = NF
                if ($1 == per) { rss0[i] = p[2]; fd0[i] = p[3]; th0[i] = p[4] }
                rss1[i] = p[2]; fd1[i] = p[3]; th1[i] = p[4]
            }
        }
        END {
            flat = 1; growth = ""
            for (i = 6; i <= procs; i++) {
                d = rss1[i] - rss0[i]
                if (d > 8192 && d > rss0[i] / 10) { flat = 0 }
                if (fd1[i] - fd0[i] > 2 || th1[i] - th0[i] > 2) { flat = 0 }
                growth = growth sprintf("%s%s %+.1f MiB anon RSS, %+d fds, %+d threads", growth == "" ? "" : "; ", name[i], d / 1024, fd1[i] - fd0[i], th1[i] - th0[i])
            }
            ratio = 100 * req[minutes] / req[2]
            printf "Verdict: resources after warm-up (end of minute 1 → end): %s — %s. ", growth, flat ? "flat" : "**NOT flat**"
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
