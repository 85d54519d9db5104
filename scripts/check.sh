#!/usr/bin/env bash
# The static checks (`npm run check`; CI runs them before the tests): types, lint, formatting.
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
echo "check: types, lint and formatting are clean" >&2
