#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for FerretDB's postgresql handler (tests, benchmarks).
#
#   tests/tools/postgresql.sh start DIR   install PostgreSQL from apt if missing, create a cluster
#                                         in DIR/pgdata, start it on a free loopback port (no unix
#                                         socket outside DIR) with a database `ferretdb`, and print
#                                         its URL: postgres://ttscm@127.0.0.1:PORT/ferretdb
#   tests/tools/postgresql.sh stop DIR    stop that cluster (fast shutdown; then SIGKILL)
#
# PostgreSQL refuses to run as root: as root, the cluster runs as the system user `ttscm-pg`
# (created if missing) and DIR is made traversable for it; as anyone else, as that user.
# Trust authentication on loopback only: a throw-away cluster for one run, nothing to protect.
# synchronous_commit=off: a commit is acknowledged before its WAL is flushed (flushed within
# 200 ms), like MongoDB's default write concern and FerretDB-on-SQLite's synchronous=NORMAL in
# the tests — a crash of the machine may lose the last moments, a crash of a process does not.
# The postmaster's pid is the first line of DIR/pgdata/postmaster.pid; its log is DIR/pg.log.
set -euo pipefail

log() { echo "[postgresql.sh] $*" >&2; }

PG_USER=ttscm-pg

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

install() {
  pg_bin >/dev/null && return 0
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  log "apt-get install postgresql"
  # The package would create and start a cluster of its own (`main`, port 5432): not wanted.
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    "${sudo[@]}" mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  pg_bin >/dev/null || { log "no initdb under /usr/lib/postgresql/*/bin after the install"; exit 1; }
}

# as_pg CMD...: runs CMD as the cluster's user.
as_pg() {
  if ((EUID == 0)); then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  log "no free port found"
  return 1
}

start() {
  local dir=$1 bin port deadline
  install
  bin=$(pg_bin)
  if ((EUID == 0)); then
    id "$PG_USER" >/dev/null 2>&1 ||
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
    # The cluster's user must reach DIR (a temp dir, and the run's temp dir it sits in).
    chmod o+x "$dir" "$(dirname "$dir")"
  fi
  mkdir -p "$dir/pgdata" "$dir/pgsock"
  ((EUID == 0)) && chown "$PG_USER" "$dir/pgdata" "$dir/pgsock"
  as_pg "$bin/initdb" --pgdata="$dir/pgdata" --username=ttscm --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
  port=$(free_port)
  : >"$dir/pg.log"
  ((EUID == 0)) && chown "$PG_USER" "$dir/pg.log"
  as_pg "$bin/pg_ctl" --pgdata="$dir/pgdata" --log="$dir/pg.log" --wait --timeout=60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir/pgsock -c synchronous_commit=off" \
    >/dev/null || { cat "$dir/pg.log" >&2; log "pg_ctl start failed"; exit 1; }
  as_pg "$bin/createdb" --host=127.0.0.1 --port="$port" --username=ttscm ferretdb
  echo "postgres://ttscm@127.0.0.1:$port/ferretdb"
}

stop() {
  local dir=$1 bin pid
  [[ -f $dir/pgdata/postmaster.pid ]] || return 0
  bin=$(pg_bin)
  pid=$(head -n 1 "$dir/pgdata/postmaster.pid")
  as_pg "$bin/pg_ctl" --pgdata="$dir/pgdata" --mode=fast --wait --timeout=20 stop >/dev/null 2>&1 ||
    kill -9 "$pid" 2>/dev/null || true
}

case ${1:-} in
  start) start "${2:?usage: $0 start DIR}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 64 ;;
esac
