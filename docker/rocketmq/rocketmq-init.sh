#!/usr/bin/env bash
# Creates (or updates) the RocketMQ topics and consumer groups DMP uses, then checks they exist.
# Run by the `rocketmq-init` service of docker/docker-compose.yml with the apache/rocketmq image:
#   topics.txt   "topic message_type"              (FIFO topics also get order=true)
#   groups.txt   "group orderly [retry_max_times]"
# mqadmin exits 0 even when it fails, so its output is checked. Retries while the broker registers.
set -euo pipefail

NAMESRV="${NAMESRV_ADDR:?NAMESRV_ADDR is required}"
CLUSTER="${ROCKETMQ_CLUSTER:-DefaultCluster}"
QUEUES="${ROCKETMQ_QUEUES:-8}"
TOPICS_FILE="${TOPICS_FILE:-/opt/dmp/topics.txt}"
GROUPS_FILE="${GROUPS_FILE:-/opt/dmp/groups.txt}"
ATTEMPTS="${INIT_ATTEMPTS:-30}"
MQADMIN="${ROCKETMQ_HOME:?}/bin/mqadmin"

log() { printf '[rocketmq-init] %s\n' "$*"; }

# mqadmin "<success pattern>" args...: retries until the output matches.
mqadmin_until() {
  local pattern="$1" out attempt
  shift
  for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
    out="$(sh "$MQADMIN" "$@" -n "$NAMESRV" 2>&1 || true)"
    if grep -q -- "$pattern" <<<"$out"; then
      return 0
    fi
    log "attempt ${attempt}/${ATTEMPTS}: mqadmin $1 not done yet: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
    sleep 5
  done
  log "ERROR: mqadmin $* failed: ${out}"
  return 1
}

# Wait until the broker has registered with the name server.
mqadmin_until 'broker-' clusterList

while read -r topic type queues _; do
  [[ -z "${topic}" || "${topic}" == \#* ]] && continue
  queues="${queues:-$QUEUES}"
  args=(updateTopic -c "$CLUSTER" -t "$topic" -r "$queues" -w "$queues" -a "+message.type=${type}")
  [[ "$type" == FIFO ]] && args+=(-o true)
  mqadmin_until 'success' "${args[@]}"
  log "topic ${topic} message.type=${type} queues=${queues}"
done <"$TOPICS_FILE"

while read -r group orderly retries _; do
  [[ -z "${group}" || "${group}" == \#* ]] && continue
  args=(updateSubGroup -c "$CLUSTER" -g "$group" -o "${orderly:-false}")
  [[ -n "${retries:-}" ]] && args+=(-r "$retries")
  mqadmin_until 'success' "${args[@]}"
  log "group ${group} orderly=${orderly:-false} retry_max_times=${retries:-default}"
done <"$GROUPS_FILE"

# Read back: every topic must be routable through the name server.
topic_list="$(sh "$MQADMIN" topicList -n "$NAMESRV" 2>&1 || true)"
missing=0
while read -r topic _; do
  [[ -z "${topic}" || "${topic}" == \#* ]] && continue
  if ! grep -qx -- "$topic" <<<"$topic_list"; then
    log "ERROR: topic ${topic} is not listed by the name server"
    missing=1
  fi
done <"$TOPICS_FILE"
exit "$missing"
