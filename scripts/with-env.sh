#!/usr/bin/env bash
# Runs a command with the project's toolchain: `npm run` scripts go through here, so the apps and
# tools run on the project's Node.js even when npm itself was started by an older node (the apps
# crash at start-up on Node 20). Installs the toolchain first (scripts/bootstrap.sh) when the node
# on PATH is older than package.json's `engines.node` or node_modules is missing.
#
#   bash scripts/with-env.sh node dist/tools/cli/src/main.js --help
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

toolchain_ready() {
  [ -d "$DMP_ROOT/node_modules" ] &&
    node -e 'const wanted = Number(/\d+/.exec(require(process.argv[1]).engines.node)[0]);
      process.exit(Number(process.versions.node.split(".")[0]) >= wanted ? 0 : 1)' \
      "$DMP_ROOT/package.json" 2>/dev/null
}

if ! toolchain_ready; then
  # Its progress goes to stderr: the command's own output (e.g. `npm run dmp -- … --json`) stays clean.
  bash "$DMP_ROOT/scripts/bootstrap.sh" >&2
  hash -r
  toolchain_ready || {
    echo "with-env: scripts/bootstrap.sh did not leave a usable toolchain" \
      "(node: $(node --version 2>/dev/null || echo none); package.json engines.node; node_modules)" >&2
    exit 1
  }
fi
exec "$@"
