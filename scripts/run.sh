#!/usr/bin/env bash
# The main job (`npm start`): the local stack, the three apps, and the device simulator.
# Extra arguments go to the simulator, e.g. `npm start -- --devices 10000 --rate 2000`.
# Ctrl-C stops the simulator and the apps (gracefully); the stack stays up (`npm run stack:down`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DMP_ROOT"

bash scripts/bootstrap.sh
npm run --silent build
bash scripts/stack.sh up

LOG_DIR="$DMP_ROOT/.stack/logs"
# Local secrets, made once at random and kept in .stack/ (the apps refuse to start without an admin
# token and an auth secret, and refuse placeholders): ADMIN_TOKEN is what `npm run dmp` needs too.
SECRETS_FILE="$DMP_ROOT/.stack/local-secrets.env"
if [[ ! -s "$SECRETS_FILE" ]]; then
  mkdir -p "$(dirname "$SECRETS_FILE")"
  (umask 077 && printf 'ADMIN_TOKEN=%s\nMQTT_AUTH_HTTP_SECRET=%s\n' \
    "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" > "$SECRETS_FILE")
fi
secret_of() { sed -n "s/^$1=//p" "$SECRETS_FILE"; }
export ADMIN_TOKEN="${ADMIN_TOKEN:-$(secret_of ADMIN_TOKEN)}"
export MQTT_AUTH_HTTP_SECRET="${MQTT_AUTH_HTTP_SECRET:-$(secret_of MQTT_AUTH_HTTP_SECRET)}"
echo "local admin token and auth secret: $SECRETS_FILE"
# The simulator's fleet, registered below so that dmp-mqtt accepts its devices.
devices=1000 prefix=sim
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --devices) devices="${args[i + 1]}" ;;
    --device-prefix) prefix="${args[i + 1]}" ;;
  esac
done
mkdir -p "$LOG_DIR"
pids=()
stop_apps() {
  [ ${#pids[@]} -eq 0 ] || { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
}
trap stop_apps EXIT
trap 'exit 130' INT TERM

# Start downstream first so each hop finds the next one ready.
for app in dmp-data dmp-kernel dmp-mqtt; do
  node --enable-source-maps "dist/apps/$app/src/main.js" >>"$LOG_DIR/$app.log" 2>&1 &
  pids+=($!)
done
for port in 3003 3002 3001; do
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "app on port $port is not healthy; see $LOG_DIR" >&2; exit 1; }
done

echo "registering $devices simulated devices ($prefix-…)"
node dist/tools/cli/src/main.js devices register --prefix "$prefix" --count "$devices" >/dev/null

# A device of the fleet, as the simulator names them ({prefix}-{index}, zero-padded).
last=$((devices - 1))
example="$prefix-$(printf "%0${#last}d" 1)"
cat <<INFO
DMP is running (logs in $LOG_DIR; admin token in $SECRETS_FILE):
  health/metrics  http://127.0.0.1:3001  dmp-mqtt · :3002 dmp-kernel · :3003 dmp-data
  traces          http://127.0.0.1:16686/api/traces?service=dmp-mqtt&limit=5   (Jaeger query API)
  metrics         http://127.0.0.1:9090/graph                                   (Prometheus)
  data            clickhouse-client --query "SELECT device_id, count() FROM dmp.telemetry_raw FINAL GROUP BY device_id ORDER BY device_id LIMIT 10"
  why             npm run dmp -- explain alarm <alarm id>   ·   npm run dmp -- explain aggregate <device> <metric> <minute>
  history         npm run dmp -- telemetry correct <metric> --devices $example --from <t> --to <t> --offset <v> --reason <why>
                  npm run dmp -- rules reprocess --from <t> --to <t> [--apply --reason <why>]   (alarms as a rule set would raise them)
  commands        npm run dmp -- commands list $example   ·   npm run dmp -- commands show <command id>   (sent, replied, failed, expired)
Starting the device simulator (Ctrl-C to stop)…
INFO
node --enable-source-maps dist/tools/simulator/src/main.js --devices "$devices" --rate 200 "$@"
