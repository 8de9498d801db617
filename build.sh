#!/usr/bin/env bash
# websd's one entry point. Each command installs what it needs when it is missing.
#   ./build.sh [build]     release wasm → www/pkg/
#   ./build.sh serve [PORT] build, then serve the site on http://127.0.0.1:PORT (default 8080)
#   ./build.sh test        native tests, the wasm build and the browser tests, with a summary
#   ./build.sh native      the native CLI (target/release/websd)
set -euo pipefail
cd "$(dirname "$0")"

TARGET_DIR=${CARGO_TARGET_DIR:-target}
WASM_TARGET=wasm32-unknown-unknown
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Debian packages: install the missing ones (one apt-get update per run).
APT_UPDATED=0
ensure_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  if [ $APT_UPDATED -eq 0 ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# wasm-bindgen-cli must be exactly the wasm-bindgen crate's version in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_tools() {
  rustup target list --installed | grep -qx "$WASM_TARGET" || rustup target add "$WASM_TARGET" || return 1
  local want; want=$(wasm_bindgen_version)
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    log "installing wasm-bindgen-cli $want"
    cargo install wasm-bindgen-cli --version "$want" --force || return 1
  fi
}

ensure_rust_component() {
  rustup component list --installed 2>/dev/null | grep -q "^$1" || rustup component add "$1"
}

ensure_node_deps() {
  if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/binaryen ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing npm packages (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

# Each step ends the function on failure: it also runs inside `if` (run_step), where `set -e` is off.
build_wasm() {
  ensure_wasm_tools || return 1
  log "building the wasm module (release)"
  cargo build --release --lib --target "$WASM_TARGET" || return 1
  rm -rf www/pkg
  wasm-bindgen --target web --no-typescript --out-dir www/pkg "$TARGET_DIR/$WASM_TARGET/release/websd.wasm" || return 1
  report_size "after wasm-bindgen"
  # npm's binaryen (Debian's older wasm-opt produces a module that fails at start). Halves the size.
  if [ "${WEBSD_NO_WASM_OPT:-0}" != 1 ]; then
    ensure_node_deps || return 1
    log "wasm-opt -Oz"
    node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals www/pkg/websd_bg.wasm -o www/pkg/websd_bg.opt.wasm || return 1
    mv www/pkg/websd_bg.opt.wasm www/pkg/websd_bg.wasm || return 1
    report_size "after wasm-opt"
  fi
  stamp_build
}

# The service worker names its cache after this build (sw.js imports www/pkg/build.js): a new
# build changes the file, the browser installs the new worker, and it deletes the old cache.
stamp_build() {
  local id
  id=$(cat index.html bench.html manifest.webmanifest sw.js www/*.js www/*.css www/*.svg www/models.json www/pkg/websd.js www/pkg/websd_bg.wasm | sha256sum | cut -c1-16)
  printf "// Written by build.sh: the id of this build (the service worker's cache name).\nself.WEBSD_BUILD = '%s';\n" "$id" > www/pkg/build.js
  log "build id $id"
}

report_size() {
  local f=www/pkg/websd_bg.wasm
  log "$f $1: $(($(stat -c %s $f) / 1024)) KiB, $(($(gzip -c $f | wc -c) / 1024)) KiB gzip"
}

build_native() {
  log "building the native CLI (release)"
  cargo build --release --bins
}

# Test runs: each step's output is kept so the test counts can be added up at the end.
PASSED=0; FAILED=0; FAILED_STEPS=()
count_tests() {
  # cargo test: "test result: ok. 3 passed; 1 failed; ..."; node --test: "# pass 3" / "ℹ pass 3".
  local p f
  read -r p f < <(awk '
    /test result: / { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
    /^(# |ℹ )pass [0-9]+$/ { p += $NF }
    /^(# |ℹ )fail [0-9]+$/ { f += $NF }
    END { print p + 0, f + 0 }' "$1")
  PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
}

run_step() {
  local name=$1; shift
  local out; out=$(mktemp)
  log "$name"
  local start=$SECONDS
  if "$@" 2>&1 | tee "$out"; then :; else FAILED_STEPS+=("$name"); fi
  log "$name: $((SECONDS - start)) s"
  count_tests "$out"
  rm -f "$out"
}

# A step run in the background (its output goes to a file, shown when it is waited for).
BG_NAME=""; BG_PID=""; BG_OUT=""; BG_START=0
start_step() {
  BG_NAME=$1; shift
  BG_OUT=$(mktemp); BG_START=$SECONDS
  log "$BG_NAME (in the background; its output follows when it ends)"
  "$@" >"$BG_OUT" 2>&1 &
  BG_PID=$!
}
wait_step() {
  local status=0
  wait "$BG_PID" || status=$?
  log "$BG_NAME"
  cat "$BG_OUT"
  log "$BG_NAME: $((SECONDS - BG_START)) s (ended at $((SECONDS - TEST_START)) s)"
  [ $status -ne 0 ] && FAILED_STEPS+=("$BG_NAME")
  count_tests "$BG_OUT"
  rm -f "$BG_OUT"
}

# The native tests keep about one of the two cores busy (user time ≈ wall time), so the wasm
# build runs beside them. cargo holds the target directory's lock only while it compiles, so the
# tests are compiled first; the wasm build then shares the host's proc-macros and build scripts.
cmd_test() {
  TEST_START=$SECONDS
  ensure_apt chromium mesa-vulkan-drivers
  ensure_rust_component rustfmt
  ensure_rust_component clippy
  run_step "formatting (cargo fmt --check; rustfmt.toml)" cargo fmt --check
  # Clippy lints websd while it compiles (clippy-driver as websd's rustc, `cargo clippy -- -D
  # warnings`): `cargo clippy` would check every dependency again, once per target (2-3 min each).
  export RUSTC_WORKSPACE_WRAPPER; RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver)
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  run_step "native build and lint (tests and CLI; clippy -D warnings)" cargo test --release --no-run
  start_step "wasm build and lint (clippy -D warnings)" build_wasm
  run_step "native tests (cargo test --release)" cargo test --release
  wait_step
  ensure_node_deps
  run_step "browser tests (Playwright + Chromium, WebGPU)" \
    node --test --test-concurrency=1 --test-reporter=spec tests/e2e/
  echo
  if [ ${#FAILED_STEPS[@]} -gt 0 ]; then
    log "FAILED steps: ${FAILED_STEPS[*]}"
    [ "$FAILED" -eq 0 ] && FAILED=${#FAILED_STEPS[@]}
  else
    log "all steps passed"
  fi
  log "total: $((SECONDS - TEST_START)) s"
  echo "websd: $PASSED passed, $FAILED failed"
  [ ${#FAILED_STEPS[@]} -eq 0 ] && [ "$FAILED" -eq 0 ]
}

case "${1:-build}" in
  build) build_wasm ;;
  native) build_native ;;
  serve)
    build_wasm
    exec node scripts/serve.mjs "${2:-8080}"
    ;;
  test) cmd_test ;;
  *) echo "usage: $0 [build | serve [PORT] | test | native]" >&2; exit 2 ;;
esac
