#!/usr/bin/env bash
# The static checks (`npm run check`; CI runs them before the tests): types, lint, formatting, and
# folder dependencies that point one way (tools/check-folders).
# Stops at the first failure and names the command that reproduces or fixes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
  local script=$1 hint=$2
  echo "check: npm run $script" >&2
  npm run --silent "$script" || {
    echo "check: \`npm run $script\` failed — $hint" >&2
    exit 1
  }
}
step typecheck 'the compiler errors are above'
step lint 'the rule broken is named after each location above'
step format:check '`npm run format` rewrites the files listed above'
step check:folders 'move the code so that each import listed above points one way (apps → libs, no cycles)'
echo "check: types, lint, formatting and folder dependencies are clean" >&2
