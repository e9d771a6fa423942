#!/usr/bin/env bash
# Prints (stdout, path only) a directory holding pinned `kustomize` and `kubeconform` binaries,
# building them once with `go install` (Go modules through the module proxy) into
#   ${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/deploy-tools-<kustomize>-<kubeconform>/bin
# Idempotent: a second run only checks the versions. deploy/check.sh calls it. Needs only Go.
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.1     # go.mod: go 1.24 (v5.8.3 needs Go 1.27)
KUBECONFORM_VERSION=v0.7.0   # go.mod: go 1.24 (v0.8.0 needs Go 1.26)
DEST="${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/deploy-tools-$KUSTOMIZE_VERSION-$KUBECONFORM_VERSION"
BIN="$DEST/bin"

log() { echo "[deploy-tools.sh] $*" >&2; }

works() {
  [[ -x $BIN/kustomize && -x $BIN/kubeconform ]] \
    && [[ $("$BIN/kustomize" version 2>/dev/null) == "$KUSTOMIZE_VERSION" ]] \
    && [[ $("$BIN/kubeconform" -v 2>/dev/null) == "$KUBECONFORM_VERSION" ]]
}

if works; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
# One installer at a time; a second caller waits and then reuses the result.
exec 9>"$DEST/.lock"
flock 9
if works; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { log "Go is needed to install kustomize and kubeconform"; exit 1; }
start=$SECONDS
log "go install kustomize $KUSTOMIZE_VERSION and kubeconform $KUBECONFORM_VERSION ($(go version))"
# -ldflags: kustomize and kubeconform print these as their version; `go install` alone leaves
# them empty / "(devel)", and the check above compares them.
(cd "$DEST" && GOBIN="$BIN" GOFLAGS=-buildvcs=false GO111MODULE=on \
  go install -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_VERSION" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION") >&2
(cd "$DEST" && GOBIN="$BIN" GOFLAGS=-buildvcs=false GO111MODULE=on \
  go install -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION") >&2
works || {
  log "installed, but the versions do not match: kustomize '$("$BIN/kustomize" version 2>&1)'," \
      "kubeconform '$("$BIN/kubeconform" -v 2>&1)'"
  exit 1
}
log "installed into $BIN in $((SECONDS - start)) s"
echo "$BIN"
