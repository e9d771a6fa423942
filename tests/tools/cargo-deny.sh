#!/usr/bin/env bash
# Prints (stdout, path only) a cargo-deny binary of the pinned version, building it once into
#   ${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/cargo-deny-<version>/bin/cargo-deny
# with `cargo install --locked` (its own target dir, never the workspace's: building it shares
# nothing with TTSCM and must not evict TTSCM's artifacts). Takes about 5 minutes on 2 cores the
# first time; afterwards the binary is reused. tests/run.sh runs it on deny.toml.
set -euo pipefail

VERSION=0.20.2
DEST="${TTSCM_CACHE_DIR:-$HOME/.cache/ttscm}/cargo-deny-$VERSION"
BIN="$DEST/bin/cargo-deny"

log() { echo "[cargo-deny.sh] $*" >&2; }

works() { [[ -x $BIN ]] && [[ $("$BIN" --version 2>/dev/null) == "cargo-deny $VERSION" ]]; }

if works; then echo "$BIN"; exit 0; fi

mkdir -p "$DEST"
# One builder at a time; a second caller waits and then reuses the result.
exec 9>"$DEST/.lock"
flock 9
if works; then echo "$BIN"; exit 0; fi

command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
# The build runs outside the workspace, so its rust-toolchain.toml and .cargo/config.toml do not
# apply; with rustup, use the workspace's toolchain anyway rather than whatever the default is.
cargo=(cargo)
if command -v rustup >/dev/null; then
  toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../../rust-toolchain.toml")
  cargo+=("+$toolchain")
fi
target="$DEST/target"
start=$SECONDS
log "building cargo-deny $VERSION with $("${cargo[@]}" --version) (about 5 minutes on 2 cores)"
(cd "$DEST" && RUSTFLAGS= CARGO_TARGET_DIR="$target" \
  "${cargo[@]}" install --locked cargo-deny --version "$VERSION" --root "$DEST") >&2
rm -rf "$target"
works || { log "no working $BIN after cargo install"; exit 1; }
log "built $BIN in $((SECONDS - start)) s"
echo "$BIN"
