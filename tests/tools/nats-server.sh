#!/usr/bin/env bash
# Prints (stdout, path only) a working, JetStream-capable `nats-server` binary.
# Order: already on PATH -> Debian package (bookworm: 2.9.10) -> `go install` into the cache dir.
set -euo pipefail

GO_VERSION_PIN=v2.10.29
CACHE="${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}"
GOBIN_DIR="$CACHE/nats-server-$GO_VERSION_PIN"

log() { echo "[nats-server.sh] $*" >&2; }

export PATH="$PATH:/usr/sbin:/usr/local/sbin"   # the Debian package installs to /usr/sbin

found() { command -v nats-server || { [[ -x $GOBIN_DIR/nats-server ]] && echo "$GOBIN_DIR/nats-server"; }; }

if bin=$(found); then echo "$bin"; exit 0; fi

log "installing the Debian package nats-server"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >&2 && apt-get install -y -qq nats-server >&2 && bin=$(found); then
  echo "$bin"; exit 0
fi

log "apt failed; go install github.com/nats-io/nats-server/v2@$GO_VERSION_PIN"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
mkdir -p "$GOBIN_DIR"
(cd "$GOBIN_DIR" && GOBIN="$GOBIN_DIR" GOFLAGS=-buildvcs=false GO111MODULE=on \
  go install "github.com/nats-io/nats-server/v2@$GO_VERSION_PIN") >&2
bin=$(found) || { log "no nats-server after go install"; exit 1; }
echo "$bin"
