#!/usr/bin/env bash
# The test command (`npm test`): installs what is missing, builds, brings the local stack of real
# servers up (idempotent; left running for fast re-runs — `npm run stack:down` stops it), then runs
# the unit specs and the end-to-end tests against the real servers with Node's test runner.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DMP_ROOT"

bash scripts/bootstrap.sh
npm run --silent build
bash scripts/stack.sh up || { echo "npm test: the local stack did not come up (stack.sh exit $?)" >&2; exit 1; }

# End-to-end tests share the stack: one file at a time.
node --test --test-concurrency=1 --enable-source-maps --test-reporter=spec \
  "dist/apps/**/*.spec.js" "dist/libs/**/*.spec.js" "dist/tools/**/*.spec.js" "dist/test/**/*.e2e-spec.js" "$@"
