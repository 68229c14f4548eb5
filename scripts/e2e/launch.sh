#!/usr/bin/env bash
# Serves a real VS Code (code-server) with Model Lens loaded in development mode, for trying the
# extension by hand: `scripts/e2e/launch.sh [folder]` (default: examples/), then open the printed
# URL in a browser on this machine. Ctrl-C stops code-server and everything it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
[ -f dist/extension.js ] || npm run build
exec node --import tsx test/e2e/codeServer.ts "$@"
