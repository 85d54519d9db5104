#!/usr/bin/env bash
# The test commands, with Node's test runner:
#   npm test            (all)   unit specs and end-to-end tests
#   npm run test:unit   (unit)  the unit specs next to the code (apps/, libs/, tools/): no servers needed
#   npm run test:e2e    (e2e)   the end-to-end tests in test/, against the local stack of real servers
# Each installs what is missing and builds; `all` and `e2e` also bring the stack up (idempotent; left
# running for fast re-runs — `npm run stack:down` stops it). Further arguments go to `node --test`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DMP_ROOT"

mode=all
case "${1:-}" in all | unit | e2e) mode="$1" && shift ;; esac

bash scripts/bootstrap.sh
npm run --silent build

# The compiled files of the specs that exist in the sources: dist/ keeps the output of a spec
# that was since renamed or deleted, and it must not run.
to_dist() { sed -e 's|^|dist/|' -e 's|\.ts$|.js|' | sort; }
mapfile -t unit_specs < <(find apps libs tools -name '*.spec.ts' | to_dist)
mapfile -t e2e_specs < <(find test -name '*.e2e-spec.ts' | to_dist)

if [ "$mode" = unit ]; then
  # Unit specs share nothing: they may run in parallel.
  exec node --test --enable-source-maps --test-reporter=spec "${unit_specs[@]}" "$@"
fi

bash scripts/stack.sh up || { echo "npm test: the local stack did not come up (stack.sh exit $?)" >&2; exit 1; }
if [ "$mode" = e2e ]; then unit_specs=(); fi
# End-to-end tests share the stack: one file at a time.
exec node --test --test-concurrency=1 --enable-source-maps --test-reporter=spec \
  "${unit_specs[@]}" "${e2e_specs[@]}" "$@"
