#!/usr/bin/env bash
# Prints (stdout, path only) a Schemathesis CLI of the pinned version, installing it once into a
# Python virtual environment at
#   ${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/schemathesis-<version>/bin/schemathesis
# with pip from PyPI (Python >= 3.10; `python3.11` preferred). Reruns reuse it. tests/run.sh
# exports the path as TTSCM_TEST_SCHEMATHESIS for tests/openapi.rs, which runs it against a live
# server with the server's own OpenAPI document.
set -euo pipefail

VERSION=4.32.5
DEST="${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/schemathesis-$VERSION"
BIN="$DEST/bin/schemathesis"

log() { echo "[schemathesis.sh] $*" >&2; }

works() { [[ -x $BIN ]] && [[ $("$BIN" --version 2>/dev/null) == "schemathesis, version $VERSION" ]]; }

if works; then echo "$BIN"; exit 0; fi

mkdir -p "$(dirname "$DEST")"
# One installer at a time; a second caller waits and then reuses the result.
exec 9>"$DEST.lock"
flock 9
if works; then echo "$BIN"; exit 0; fi

python=
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null \
    && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    python=$candidate
    break
  fi
done
[[ -n $python ]] || { log "Python >= 3.10 is required"; exit 1; }

start=$SECONDS
log "installing schemathesis $VERSION with $("$python" --version) into $DEST"
rm -rf "$DEST"
"$python" -m venv "$DEST" >&2
"$DEST/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
works || { log "no working $BIN after pip install"; exit 1; }
log "installed in $((SECONDS - start)) s"
echo "$BIN"
