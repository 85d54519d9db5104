#!/usr/bin/env bash
# Local DMP stack: real servers as native background processes on 127.0.0.1.
#
#   scripts/stack.sh up     [--cluster] [SERVICE...]   install what is missing, start, wait until healthy (idempotent)
#   scripts/stack.sh down   [--cluster] [SERVICE...]   stop what `up` started (pid files): SIGTERM, then SIGKILL
#   scripts/stack.sh status [--cluster] [SERVICE...]   one line per process: up/down, pid, ports (exit 3 if any is down)
#   scripts/stack.sh check  [--cluster] [SERVICE...]   functional smoke test of running services
#   scripts/stack.sh logs   NAME [-f]                  tail a process log (NAME as printed by `status`)
#   scripts/stack.sh queues [--cluster] TOPIC...       RocketMQ: "topic broker queue min_offset max_offset"
#                                                      per queue of each TOPIC (--cluster: the profile's)
#
# SERVICE: mosquitto redis clickhouse prometheus jaeger rocketmq (default: all of them; `down` without
# SERVICE also stops the cluster profile).
# --cluster: the cluster profile instead (or besides the SERVICEs named): ZooKeeper and the four
# ClickHouse servers of cluster `dmp` (2 shards x 2 replicas), and RocketMQ with two brokers behind a
# proxy in cluster mode, on ports of their own. They can also be named one by one: zookeeper
# clickhouse-s1r1 clickhouse-s1r2 clickhouse-s2r1 clickhouse-s2r2 rocketmq-cluster.
# Everything (data, logs, pid files, rendered configs, binaries) lives in ${DMP_STACK_DIR:-<repo>/.stack};
# configuration templates live in scripts/stack/. See scripts/stack/NOTES.md.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TPL_DIR="$REPO_DIR/scripts/stack"
STACK_DIR="${DMP_STACK_DIR:-$REPO_DIR/.stack}"
mkdir -p "$STACK_DIR"
STACK_DIR="$(cd "$STACK_DIR" && pwd)"
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
CONF_DIR="$STACK_DIR/conf"
DATA_DIR="$STACK_DIR/data"
BIN_DIR="$STACK_DIR/bin"
CACHE_DIR="$STACK_DIR/cache"

ALL_SERVICES=(mosquitto redis clickhouse prometheus jaeger rocketmq)
# The cluster profile (`--cluster`): ZooKeeper, then cluster `dmp`'s servers clickhouse-s<shard>r<replica>.
CLUSTER_SERVERS=(clickhouse-s1r1 clickhouse-s1r2 clickhouse-s2r1 clickhouse-s2r2)
# RocketMQ of the cluster profile (service rocketmq-cluster): its own name server, brokers and proxy.
RMQC_BROKERS=(broker-a broker-b)
CLUSTER_SERVICES=(zookeeper "${CLUSTER_SERVERS[@]}" rocketmq-cluster)

# Jaeger v2 is built from the jaegertracing/jaeger Go module (v1.x tags of the module carry the
# v2 binary in cmd/jaeger; see NOTES.md for why not `go install ...@v2.x`).
JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_MODULE_VERSION="v1.76.0"
ROCKETMQ_VERSION="$(sed -n 's:.*<rocketmq.version>\(.*\)</rocketmq.version>.*:\1:p' "$TPL_DIR/rocketmq/pom.xml")"
ROCKETMQ_LIB="$CACHE_DIR/rocketmq-$ROCKETMQ_VERSION/lib"
ZOOKEEPER_VERSION="$(sed -n 's:.*<zookeeper.version>\(.*\)</zookeeper.version>.*:\1:p' "$TPL_DIR/zookeeper/pom.xml")"
ZOOKEEPER_LIB="$CACHE_DIR/zookeeper-$ZOOKEEPER_VERSION/lib"
JAVA_OPENS=(--add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED)

# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# render TEMPLATE DEST: copy a template, substituting @REPO_DIR@ @STACK_DIR@ @DATA_DIR@ @LOG_DIR@
render() {
  mkdir -p "$(dirname "$2")"
  sed -e "s#@REPO_DIR@#$REPO_DIR#g" -e "s#@STACK_DIR@#$STACK_DIR#g" \
      -e "s#@DATA_DIR@#$DATA_DIR#g" -e "s#@LOG_DIR@#$LOG_DIR#g" "$1" > "$2.tmp"
  mv "$2.tmp" "$2"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Processes: NAME -> pid file, log file, and a pattern its command line must match (guards against pid reuse).
pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }
proc_pattern() {
  case "$1" in
    mosquitto) echo mosquitto ;;
    redis) echo redis-server ;;
    clickhouse) echo clickhouse ;;
    prometheus) echo prometheus ;;
    jaeger) echo jaeger ;;
    rocketmq-namesrv) echo NamesrvStartup ;;
    rocketmq-proxy) echo ProxyStartup ;;
    rocketmq-cluster-namesrv) echo "conf/rocketmq-cluster/namesrv.conf" ;;
    rocketmq-broker-?) echo "conf/rocketmq-cluster/${1#rocketmq-}.conf" ;;
    rocketmq-cluster-proxy) echo "conf/rocketmq-cluster/rmq-proxy.json" ;;
    zookeeper) echo QuorumPeerMain ;;
    clickhouse-s?r?) echo "conf/$1/config.xml" ;;
  esac
}
proc_ports() {
  case "$1" in
    mosquitto) echo "1883 1884" ;;
    redis) echo "6379" ;;
    clickhouse) echo "8123 9000" ;;
    prometheus) echo "9090" ;;
    jaeger) echo "4317 4318 16686 16685 13133" ;;
    rocketmq-namesrv) echo "9876" ;;
    rocketmq-proxy) echo "8081 8080 10911 10909 10912" ;;
    # cluster profile: name server 9877, proxy gRPC 8091 / remoting 8090, broker-a 10921 (+ its fast
    # port 10919 and HA port 10922), broker-b 10931 (10929, 10932)
    rocketmq-cluster-namesrv) echo "9877" ;;
    rocketmq-cluster-proxy) echo "8091 8090" ;;
    rocketmq-broker-a) echo "10921 10919 10922" ;;
    rocketmq-broker-b) echo "10931 10929 10932" ;;
    zookeeper) echo "2181" ;;
    # clickhouse-s<S>r<R>: HTTP 82SR, native 92SR, interserver (replica fetches) 93SR
    clickhouse-s?r?) local sr="${1:12:1}${1:14:1}"; echo "82$sr 92$sr 93$sr" ;;
  esac
}
# Extra log files worth showing when a process fails.
extra_logs() {
  case "$1" in
    clickhouse) echo "$LOG_DIR/clickhouse/clickhouse-server.err.log" ;;
    rocketmq-namesrv) echo "$DATA_DIR/rocketmq/logs/rocketmqlogs/namesrv.log" ;;
    rocketmq-proxy) echo "$DATA_DIR/rocketmq/logs/rocketmqlogs/proxy.log $DATA_DIR/rocketmq/logs/rocketmqlogs/broker.log" ;;
    clickhouse-s?r?) echo "$LOG_DIR/$1/clickhouse-server.err.log" ;;
    rocketmq-cluster-namesrv) echo "$(rmqc_home namesrv)/logs/rocketmqlogs/namesrv.log" ;;
    rocketmq-broker-?) echo "$(rmqc_home "${1#rocketmq-}")/logs/rocketmqlogs/broker.log" ;;
    rocketmq-cluster-proxy) echo "$(rmqc_home proxy)/logs/rocketmqlogs/proxy.log" ;;
  esac
}
service_procs() {
  case "$1" in
    rocketmq) echo "rocketmq-namesrv rocketmq-proxy" ;;
    rocketmq-cluster) echo "rocketmq-cluster-namesrv ${RMQC_BROKERS[*]/#/rocketmq-} rocketmq-cluster-proxy" ;;
    *) echo "$1" ;;
  esac
}

# running_pid NAME: print the pid if the process we started is alive, else nothing (and drop a stale pid file)
running_pid() {
  local f pid
  f="$(pid_file "$1")"
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
     tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(proc_pattern "$1")"; then
    echo "$pid"
  else
    rm -f "$f"
  fi
}

# started_alive NAME: the process start_proc launched is still alive. Used while it starts up: until the
# forked shell has exec'd the program, its command line does not match proc_pattern yet.
started_alive() {
  local pid
  pid="$(cat "$(pid_file "$1")" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# close_inherited_fds: in a subshell about to exec a server, close every descriptor above 2. A server
# outlives whoever started it: a descriptor it inherited (e.g. the lock file of `flock LOCK npm test`,
# held by its open file, not by a process) would stay open, and locked, as long as the server runs.
close_inherited_fds() {
  local fd
  for fd in $(ls /dev/fd/); do
    if ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
  done
}

# start_proc NAME CMD...: start detached (own session), stdout/stderr to the log, pid to the pid file
start_proc() {
  local name="$1"; shift
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  printf '\n===== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >> "$(log_file "$name")"
  (close_inherited_fds && exec setsid "$@") >> "$(log_file "$name")" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$name")"
}

# ensure_ports_free NAME: fail clearly when one of NAME's ports is held by a process we did not start
ensure_ports_free() {
  local p owner
  for p in $(proc_ports "$1"); do
    if port_open "$p"; then
      owner="$(ss -ltnpH "sport = :$p" 2>/dev/null | grep -o 'users:(([^)]*' | head -n1 | sed 's/users:((//')"
      die "$1: port $p on 127.0.0.1 is already in use by another process (${owner:-unknown}); stop it first (e.g. a system service: service <name> stop)"
    fi
  done
}

show_log_tail() {
  local f
  for f in "$(log_file "$1")" $(extra_logs "$1"); do
    [[ -s "$f" ]] || continue
    printf -- '----- last 30 lines of %s\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
}

# wait_healthy NAME TIMEOUT_S CHECK_CMD...: poll until CHECK succeeds; fail if the process dies or on timeout
wait_healthy() {
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  while true; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! started_alive "$name"; then
      printf '[stack] ERROR: %s exited during startup\n' "$name" >&2
      show_log_tail "$name"; exit 1
    fi
    if (( SECONDS >= deadline )); then
      printf '[stack] ERROR: %s not healthy after %ss (check: %s)\n' "$name" "$timeout" "$*" >&2
      show_log_tail "$name"; exit 1
    fi
    sleep 0.5
  done
}

# launch NAME TIMEOUT CHECK_FN START_FN: the idempotent core of every service
#   healthy & ours -> leave alone; ours but not healthy yet -> wait; not running -> check ports, start, wait
launch() {
  local name="$1" timeout="$2" check="$3" starter="$4" pid
  pid="$(running_pid "$name")"
  if [[ -n "$pid" ]]; then
    if "$check" >/dev/null 2>&1; then log "$name already running (pid $pid)"; return 0; fi
    log "$name running (pid $pid) but not healthy yet, waiting"
  else
    ensure_ports_free "$name"
    log "starting $name"
    "$starter"
  fi
  wait_healthy "$name" "$timeout" "$check"
  log "$name healthy (pid $(running_pid "$name"))"
}

# stop_proc NAME [GRACE_S]: SIGTERM, wait, then SIGKILL; only for processes we started
stop_proc() {
  local name="$1" grace="${2:-20}" pid i
  pid="$(running_pid "$name")"
  if [[ -z "$pid" ]]; then rm -f "$(pid_file "$name")"; return 0; fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within ${grace}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(pid_file "$name")"
}

# ----------------------------------------------------------------------------------------------
# installation (fresh machine, root, non-interactive)
# ----------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ "$(id -u)" == 0 ]] || die "missing Debian packages: ${missing[*]} (run as root or install them)"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ((APT_UPDATED == 0)); then apt-get update -qq; APT_UPDATED=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$LOG_DIR/apt-install.log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/apt-install.log" >&2; die "apt-get install failed"; }
  # Debian's postinst may start the system service (no policy-rc.d / sysvinit / systemd):
  # we run our own processes, so stop (and on systemd, disable) the ones we just installed.
  for p in "${missing[@]}"; do
    case "$p" in mosquitto|redis-server|clickhouse-server|prometheus) ;; *) continue ;; esac
    if [[ -d /run/systemd/system ]]; then
      systemctl disable --now "$p" >/dev/null 2>&1 || true
    elif [[ -x "/etc/init.d/$p" ]]; then
      service "$p" stop >/dev/null 2>&1 || true
    fi
  done
}

packages_for() {
  case "$1" in
    mosquitto) echo mosquitto mosquitto-clients ;;
    redis) echo redis-server redis-tools ;;
    clickhouse) echo clickhouse-server clickhouse-client ;;
    prometheus) echo prometheus ;;
    jaeger) echo ca-certificates ;;
    rocketmq|rocketmq-cluster|zookeeper) echo openjdk-17-jdk-headless maven ;;
    clickhouse-s?r?) echo clickhouse-server clickhouse-client ;;
  esac
}

install_packages() {
  # wget and openssl: the deployment test runs compose's healthchecks and docker/tls/make-certs.sh.
  local pkgs=(curl iproute2 procps util-linux wget openssl) s
  for s in "$@"; do
    # Java and Maven may come from elsewhere (e.g. an SDK install): only install when the commands are missing
    if [[ "$s" == rocketmq || "$s" == rocketmq-cluster || "$s" == zookeeper ]] && command -v java >/dev/null && command -v javac >/dev/null && command -v mvn >/dev/null; then
      continue
    fi
    read -r -a more <<< "$(packages_for "$s")"
    pkgs+=("${more[@]}")
  done
  apt_install "${pkgs[@]}"
}

# ----------------------------------------------------------------------------------------------
# mosquitto
# ----------------------------------------------------------------------------------------------
mosquitto_healthy() {
  # $SYS topics are retained: a reply proves the broker speaks MQTT, not just that the port is open
  # shellcheck disable=SC2016  # literal MQTT topic
  mosquitto_sub -h 127.0.0.1 -p 1883 -V mqttv5 -t '$SYS/broker/version' -C 1 -W 3 | grep -q mosquitto
}
mosquitto_start() {
  mkdir -p "$DATA_DIR/mosquitto"
  render "$TPL_DIR/mosquitto.conf" "$CONF_DIR/mosquitto.conf"
  start_proc mosquitto mosquitto -c "$CONF_DIR/mosquitto.conf"
}
up_mosquitto() { launch mosquitto 20 mosquitto_healthy mosquitto_start; }

# ----------------------------------------------------------------------------------------------
# redis
# ----------------------------------------------------------------------------------------------
redis_healthy() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }
redis_start() {
  mkdir -p "$DATA_DIR/redis"
  render "$TPL_DIR/redis.conf" "$CONF_DIR/redis.conf"
  start_proc redis redis-server "$CONF_DIR/redis.conf"
}
up_redis() { launch redis 20 redis_healthy redis_start; }

# ----------------------------------------------------------------------------------------------
# clickhouse (Debian 18.16): a copy of the packaged config.xml/users.xml + our override in config.d/
# ----------------------------------------------------------------------------------------------
clickhouse_healthy() { [[ "$(curl -s -m 2 http://127.0.0.1:8123/ping)" == "Ok." ]]; }
clickhouse_start() {
  local d="$CONF_DIR/clickhouse"
  mkdir -p "$d/config.d" "$DATA_DIR/clickhouse" "$LOG_DIR/clickhouse"
  cp /etc/clickhouse-server/config.xml /etc/clickhouse-server/users.xml "$d/"
  render "$TPL_DIR/clickhouse.xml" "$d/config.d/dmp-stack.xml"
  # run from the data dir: the server resolves a few relative paths against its cwd
  (cd "$DATA_DIR/clickhouse" && start_proc clickhouse clickhouse-server --config-file="$d/config.xml")
}
up_clickhouse() { launch clickhouse 60 clickhouse_healthy clickhouse_start; }

# ----------------------------------------------------------------------------------------------
# prometheus
# ----------------------------------------------------------------------------------------------
prometheus_healthy() { curl -sf -m 2 http://127.0.0.1:9090/-/ready >/dev/null; }
prometheus_start() {
  mkdir -p "$DATA_DIR/prometheus"
  start_proc prometheus prometheus \
    --config.file="$CONF_DIR/prometheus.yml" \
    --storage.tsdb.path="$DATA_DIR/prometheus" \
    --storage.tsdb.retention.time=2d \
    --web.listen-address=127.0.0.1:9090 \
    --web.enable-lifecycle
}
up_prometheus() {
  local was_running
  was_running="$(running_pid prometheus)"
  render "$TPL_DIR/prometheus.yml" "$CONF_DIR/prometheus.yml"
  launch prometheus 60 prometheus_healthy prometheus_start
  # already running: hot-reload, picking up template edits and new rule files (docker/prometheus/alerts/*.yml)
  if [[ -n "$was_running" ]]; then
    curl -sf -m 10 -X POST http://127.0.0.1:9090/-/reload >/dev/null ||
      die "prometheus: config reload failed (see $(log_file prometheus))"
    log "prometheus config reloaded"
  fi
}

# ----------------------------------------------------------------------------------------------
# jaeger v2 (OTLP in, in-memory storage, query API), built once with the Go toolchain
# ----------------------------------------------------------------------------------------------
JAEGER_BUILD_PID=""
# the build itself (internal subcommand `_build-jaeger`, run in its own process group)
jaeger_build() {
  local dir
  dir="$(go mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || die "go mod download did not report a module dir"
  cd "$dir"
  # built inside the module itself, so its go.mod (incl. replace directives) and go.sum apply
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$BIN_DIR/jaeger.tmp" ./cmd/jaeger
  mv "$BIN_DIR/jaeger.tmp" "$BIN_DIR/jaeger"
  echo "$JAEGER_MODULE_VERSION" > "$BIN_DIR/jaeger.version"
}
jaeger_built() { [[ -x "$BIN_DIR/jaeger" && "$(cat "$BIN_DIR/jaeger.version" 2>/dev/null)" == "$JAEGER_MODULE_VERSION" ]]; }
jaeger_build_start() {
  if jaeger_built || [[ -n "$JAEGER_BUILD_PID" ]]; then return 0; fi
  command -v go >/dev/null || die "jaeger: the Go toolchain (go >= 1.24) is needed to build jaeger once; put it on PATH"
  mkdir -p "$BIN_DIR" "$LOG_DIR"
  log "building jaeger ($JAEGER_MODULE@$JAEGER_MODULE_VERSION, ./cmd/jaeger) in the background, log: $LOG_DIR/jaeger-build.log"
  (close_inherited_fds && exec setsid "$BASH" "${BASH_SOURCE[0]}" _build-jaeger) > "$LOG_DIR/jaeger-build.log" 2>&1 < /dev/null &
  JAEGER_BUILD_PID=$!
}
# on an early exit of `up`, stop the background build (its whole process group)
# (under set -e a failing kill here — the build already ended — would make `up` exit 1 after all went well)
jaeger_build_abort() {
  if [[ -n "$JAEGER_BUILD_PID" ]]; then kill -- "-$JAEGER_BUILD_PID" 2>/dev/null || true; fi
}
jaeger_build_wait() {
  if jaeger_built; then
    # built meanwhile by the background build (reap it), or before this run
    [[ -z "$JAEGER_BUILD_PID" ]] || wait "$JAEGER_BUILD_PID" || true
    JAEGER_BUILD_PID=""
    return 0
  fi
  jaeger_build_start
  if ! wait "$JAEGER_BUILD_PID"; then
    JAEGER_BUILD_PID=""
    tail -n 30 "$LOG_DIR/jaeger-build.log" >&2
    die "jaeger: go build failed (full log: $LOG_DIR/jaeger-build.log)"
  fi
  JAEGER_BUILD_PID=""
  log "jaeger built: $BIN_DIR/jaeger"
}
jaeger_healthy() {
  curl -sf -m 2 http://127.0.0.1:13133/status | grep -q '"healthy":true' &&
    curl -sf -m 2 http://127.0.0.1:16686/api/services >/dev/null
}
jaeger_start() {
  render "$TPL_DIR/jaeger.yaml" "$CONF_DIR/jaeger.yaml"
  start_proc jaeger "$BIN_DIR/jaeger" --config="file:$CONF_DIR/jaeger.yaml"
}
up_jaeger() {
  jaeger_build_wait
  launch jaeger 60 jaeger_healthy jaeger_start
}

# ----------------------------------------------------------------------------------------------
# rocketmq 5: name server + proxy in LOCAL mode (embedded broker), jars from Maven, topics/groups from lists
# ----------------------------------------------------------------------------------------------
rocketmq_fetch() {
  [[ -f "$ROCKETMQ_LIB/.complete" ]] && return 0
  log "resolving RocketMQ $ROCKETMQ_VERSION jars with Maven into $ROCKETMQ_LIB"
  rm -rf "$ROCKETMQ_LIB"; mkdir -p "$ROCKETMQ_LIB"
  mvn -q -B -f "$TPL_DIR/rocketmq/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$ROCKETMQ_LIB" > "$LOG_DIR/rocketmq-maven.log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/rocketmq-maven.log" >&2; die "rocketmq: Maven could not resolve the jars"; }
  touch "$ROCKETMQ_LIB/.complete"
}

# rocketmq_java HEAP [HOME]: sets RMQ_JAVA to a java command line with the RocketMQ classpath and the
# home and log folders (HOME, default data/rocketmq) inside the stack dir (`env` keeps it a plain
# program for setsid; the pid is the JVM's). RocketMQ logs to HOME/logs/rocketmqlogs/.
rocketmq_java() {
  local home="${2:-$DATA_DIR/rocketmq}"
  RMQ_JAVA=(env ROCKETMQ_HOME="$home" java -server -Xms"$1" -Xmx"$1" -XX:+UseG1GC "${JAVA_OPENS[@]}"
    -Duser.home="$home" -Drocketmq.home.dir="$home" -cp "$ROCKETMQ_LIB/*")
}
# stack_admin CMD ARGS...: our one-JVM admin helper (scripts/stack/rocketmq/StackAdmin.java), against
# the name server at STACK_ADMIN_NAMESRV (default: the default stack's, 127.0.0.1:9876)
stack_admin() {
  ROCKETMQ_HOME="$DATA_DIR/rocketmq" java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Duser.home="$DATA_DIR/rocketmq" -Drmq.logback.configurationFile=rmq.tools.logback.xml \
    -Drocketmq.namesrv.addr="${STACK_ADMIN_NAMESRV:-127.0.0.1:9876}" -cp "$ROCKETMQ_LIB/*" \
    "$TPL_DIR/rocketmq/StackAdmin.java" "$@"
}

# DMP's topics and groups are listed once, in docker/rocketmq/ (what docker-compose.yml's rocketmq-init
# applies); the tests and the benchmark create their own (createRocketmqResources in libs/testing).
rocketmq_list() { echo "$REPO_DIR/docker/rocketmq/$1.txt"; }

namesrv_healthy() { port_open 9876; }
namesrv_start() {
  mkdir -p "$DATA_DIR/rocketmq"
  render "$TPL_DIR/namesrv.conf" "$CONF_DIR/rocketmq/namesrv.conf"
  rocketmq_java 256m
  start_proc rocketmq-namesrv "${RMQ_JAVA[@]}" -Drmq.logback.configurationFile=rmq.namesrv.logback.xml \
    org.apache.rocketmq.namesrv.NamesrvStartup -c "$CONF_DIR/rocketmq/namesrv.conf"
}
proxy_healthy() { port_open 8081 && port_open 10911 && stack_admin check; }
proxy_start() {
  render "$TPL_DIR/broker.conf" "$CONF_DIR/rocketmq/broker.conf"
  render "$TPL_DIR/rmq-proxy.json" "$CONF_DIR/rocketmq/rmq-proxy.json"
  rocketmq_java 1g
  start_proc rocketmq-proxy "${RMQ_JAVA[@]}" -XX:MaxDirectMemorySize=512m \
    -Drmq.logback.configurationFile=rmq.proxy.logback.xml \
    org.apache.rocketmq.proxy.ProxyStartup -pm local -n 127.0.0.1:9876 \
    -pc "$CONF_DIR/rocketmq/rmq-proxy.json" -bc "$CONF_DIR/rocketmq/broker.conf"
}
up_rocketmq() {
  rocketmq_fetch
  launch rocketmq-namesrv 60 namesrv_healthy namesrv_start
  launch rocketmq-proxy 120 proxy_healthy proxy_start
  log "rocketmq: applying topics and groups (docker/rocketmq/{topics,groups}.txt)"
  local out
  if ! out="$(stack_admin apply "$(rocketmq_list topics)" "$(rocketmq_list groups)" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "rocketmq: creating topics/groups failed"
  fi
  printf '%s\n' "$out" | sed 's/^/[stack]   /'
}

# ----------------------------------------------------------------------------------------------
# cluster profile: ZooKeeper (jars from Maven) + ClickHouse cluster `dmp` = 2 shards x 2 replicas
# ----------------------------------------------------------------------------------------------
zookeeper_fetch() {
  [[ -f "$ZOOKEEPER_LIB/.complete" ]] && return 0
  log "resolving ZooKeeper $ZOOKEEPER_VERSION jars with Maven into $ZOOKEEPER_LIB"
  rm -rf "$ZOOKEEPER_LIB"; mkdir -p "$ZOOKEEPER_LIB"
  mvn -q -B -f "$TPL_DIR/zookeeper/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$ZOOKEEPER_LIB" > "$LOG_DIR/zookeeper-maven.log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/zookeeper-maven.log" >&2; die "zookeeper: Maven could not resolve the jars"; }
  touch "$ZOOKEEPER_LIB/.complete"
}
# `srvr` answers with the server's mode once it serves (`ruok` says imok before that)
zookeeper_healthy() {
  [[ "$(exec 3<>/dev/tcp/127.0.0.1/2181 && printf 'srvr' >&3 && timeout 2 cat <&3)" == *"Mode: standalone"* ]]
}
zookeeper_start() {
  mkdir -p "$DATA_DIR/zookeeper" "$CONF_DIR/zookeeper"
  render "$TPL_DIR/zoo.cfg" "$CONF_DIR/zookeeper/zoo.cfg"
  start_proc zookeeper java -Xms128m -Xmx256m -XX:+UseSerialGC -Dzookeeper.admin.enableServer=false \
    -cp "$ZOOKEEPER_LIB/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$CONF_DIR/zookeeper/zoo.cfg"
}
up_zookeeper() {
  zookeeper_fetch
  launch zookeeper 60 zookeeper_healthy zookeeper_start
}

cluster_http_port() { proc_ports "$1" | awk '{print $1}'; }
# answers, and reaches ZooKeeper (replicated tables and ON CLUSTER DDL need it)
cluster_server_healthy() {
  [[ "$(curl -s -m 2 "http://127.0.0.1:$(cluster_http_port "$1")/" \
    --data-binary "SELECT count() > 0 FROM system.zookeeper WHERE path = '/'")" == 1 ]]
}
cluster_server_start() {
  local name="$1" d="$CONF_DIR/$1" ports
  read -r -a ports <<< "$(proc_ports "$name")"
  mkdir -p "$d/config.d" "$DATA_DIR/$name" "$LOG_DIR/$name"
  cp /etc/clickhouse-server/config.xml /etc/clickhouse-server/users.xml "$d/"
  render "$TPL_DIR/clickhouse-cluster.xml" "$d/config.d/dmp-stack.xml"
  sed -i -e "s#@NAME@#$name#g" -e "s#@SHARD@#0${name:12:1}#g" -e "s#@REPLICA@#r${name:14:1}#g" \
      -e "s#@HTTP_PORT@#${ports[0]}#g" -e "s#@TCP_PORT@#${ports[1]}#g" -e "s#@INTERSERVER_PORT@#${ports[2]}#g" \
      "$d/config.d/dmp-stack.xml"
  (cd "$DATA_DIR/$name" && start_proc "$name" clickhouse-server --config-file="$d/config.xml")
}
CLUSTER_CHECK_NAME=""
cluster_check_one() { cluster_server_healthy "$CLUSTER_CHECK_NAME"; }
# up_cluster_servers NAME...: starts those not running at once (each takes seconds), then waits for each
up_cluster_servers() {
  local name
  for name in "$@"; do
    [[ -n "$(running_pid "$name")" ]] && continue
    ensure_ports_free "$name"
    log "starting $name"
    cluster_server_start "$name"
  done
  for name in "$@"; do
    CLUSTER_CHECK_NAME="$name"
    wait_healthy "$name" 90 cluster_check_one
    log "$name healthy (pid $(running_pid "$name"), http 127.0.0.1:$(cluster_http_port "$name"))"
  done
}

# RocketMQ of the cluster profile (service rocketmq-cluster): its own name server (9877), brokers broker-a
# and broker-b as processes of their own (BrokerStartup) and a proxy in CLUSTER mode (gRPC 8091), so
# that message groups spread over two brokers as in production. The default stack's RocketMQ is not
# touched. Each process has its own home (logs, store) under data/rocketmq-cluster/.
RMQC_NAMESRV=127.0.0.1:9877
rmqc_home() { echo "$DATA_DIR/rocketmq-cluster/$1"; }
rmqc_conf() { echo "$CONF_DIR/rocketmq-cluster/$1"; }
rmqc_admin() { STACK_ADMIN_NAMESRV="$RMQC_NAMESRV" stack_admin "$@"; }
rmqc_namesrv_healthy() { port_open 9877; }
rmqc_namesrv_start() {
  mkdir -p "$(rmqc_home namesrv)" "$CONF_DIR/rocketmq-cluster"
  { cat "$TPL_DIR/namesrv.conf"; echo "listenPort=9877"; } > "$(rmqc_conf namesrv.conf)"
  rocketmq_java 128m "$(rmqc_home namesrv)"
  start_proc rocketmq-cluster-namesrv "${RMQ_JAVA[@]}" -Drmq.logback.configurationFile=rmq.namesrv.logback.xml \
    org.apache.rocketmq.namesrv.NamesrvStartup -c "$(rmqc_conf namesrv.conf)"
}
# rmqc_broker_healthy BROKER: listens, and is registered as master with the name server
rmqc_broker_healthy() {
  port_open "$(proc_ports "rocketmq-$1" | awk '{print $1}')" && rmqc_admin check "$1"
}
rmqc_broker_start() {
  local broker="$1" conf
  conf="$(rmqc_conf "$broker.conf")"
  mkdir -p "$(rmqc_home "$broker")/store"
  render "$TPL_DIR/broker.conf" "$conf"
  render "$TPL_DIR/rocketmq-cluster-broker.conf" "$conf.cluster"
  sed -e "s#@BROKER@#$broker#g" -e "s#@PORT@#$(proc_ports "rocketmq-$broker" | awk '{print $1}')#g" \
    "$conf.cluster" >> "$conf"
  rm -f "$conf.cluster"
  rocketmq_java 512m "$(rmqc_home "$broker")"
  start_proc "rocketmq-$broker" "${RMQ_JAVA[@]}" -XX:MaxDirectMemorySize=256m \
    -Drmq.logback.configurationFile=rmq.broker.logback.xml \
    org.apache.rocketmq.broker.BrokerStartup -c "$conf"
}
rmqc_proxy_healthy() { port_open 8091 && port_open 8090; }
rmqc_proxy_start() {
  mkdir -p "$(rmqc_home proxy)"
  render "$TPL_DIR/rmq-proxy-cluster.json" "$(rmqc_conf rmq-proxy.json)"
  rocketmq_java 384m "$(rmqc_home proxy)"
  start_proc rocketmq-cluster-proxy "${RMQ_JAVA[@]}" -XX:MaxDirectMemorySize=256m \
    -Drmq.logback.configurationFile=rmq.proxy.logback.xml \
    org.apache.rocketmq.proxy.ProxyStartup -pm cluster -n "$RMQC_NAMESRV" -pc "$(rmqc_conf rmq-proxy.json)"
}
RMQC_CHECK_BROKER=""
rmqc_broker_check_one() { rmqc_broker_healthy "$RMQC_CHECK_BROKER"; }
up_rocketmq-cluster() {
  local broker out
  rocketmq_fetch
  launch rocketmq-cluster-namesrv 60 rmqc_namesrv_healthy rmqc_namesrv_start
  # the brokers start at once (each takes 10-20 s), then each is waited for
  for broker in "${RMQC_BROKERS[@]}"; do
    [[ -n "$(running_pid "rocketmq-$broker")" ]] && continue
    ensure_ports_free "rocketmq-$broker"
    log "starting rocketmq-$broker"
    rmqc_broker_start "$broker"
  done
  for broker in "${RMQC_BROKERS[@]}"; do
    RMQC_CHECK_BROKER="$broker"
    wait_healthy "rocketmq-$broker" 120 rmqc_broker_check_one
    log "rocketmq-$broker healthy (pid $(running_pid "rocketmq-$broker"), registered with $RMQC_NAMESRV)"
  done
  # the same lists as the default stack, created on every broker (StackAdmin applies them to each
  # master registered), before the proxy starts: it never caches a missing route
  log "rocketmq-cluster: applying topics and groups on ${RMQC_BROKERS[*]}"
  if ! out="$(rmqc_admin apply "$(rocketmq_list topics)" "$(rocketmq_list groups)" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "rocketmq-cluster: creating topics/groups failed"
  fi
  log "rocketmq-cluster: $(grep -c '^topic ' <<< "$out") topics and $(grep -c '^group ' <<< "$out") groups on each broker"
  launch rocketmq-cluster-proxy 90 rmqc_proxy_healthy rmqc_proxy_start
}

# ----------------------------------------------------------------------------------------------
# check: functional smoke test of running services
# ----------------------------------------------------------------------------------------------
check_mosquitto() {
  local out="$RUN_DIR/check-mqtt.out" sub i
  : > "$out"
  # shellcheck disable=SC2016  # literal MQTT topic: an MQTT 5 shared subscription
  mosquitto_sub -h 127.0.0.1 -p 1883 -V mqttv5 -q 1 -t '$share/stackcheck/dmp/stack/check' -C 1 -W 10 > "$out" &
  sub=$!
  for ((i = 0; i < 30; i++)); do
    sleep 0.3
    mosquitto_pub -h 127.0.0.1 -p 1883 -V mqttv5 -q 1 -t dmp/stack/check -m "hello-$$"
    kill -0 "$sub" 2>/dev/null || break
  done
  wait "$sub" || true
  grep -q "hello-$$" "$out"
}
check_redis() {
  redis_healthy && redis-cli -h 127.0.0.1 set dmp:stack:check ok EX 10 >/dev/null &&
    [[ "$(redis-cli -h 127.0.0.1 get dmp:stack:check)" == ok ]]
}
check_clickhouse() {
  local v
  v="$(curl -sf -m 5 http://127.0.0.1:8123/ --data-binary 'SELECT version()')" || return 1
  printf '  clickhouse version %s\n' "$v"
  curl -sf -m 10 http://127.0.0.1:8123/ --data-binary \
    'CREATE TABLE IF NOT EXISTS default.dmp_stack_check (id UInt32, name String, ts DateTime) ENGINE = MergeTree ORDER BY id' >/dev/null &&
  curl -sf -m 10 'http://127.0.0.1:8123/?query=INSERT%20INTO%20default.dmp_stack_check%20FORMAT%20JSONEachRow' --data-binary \
    $'{"id":1,"name":"a","ts":"2024-01-01 00:00:00"}\n{"id":2,"name":"b","ts":1700000000}' >/dev/null &&
  [[ "$(curl -sf -m 10 http://127.0.0.1:8123/ --data-binary 'SELECT count() FROM default.dmp_stack_check')" == 2 ]] &&
  curl -sf -m 10 http://127.0.0.1:8123/ --data-binary 'DROP TABLE default.dmp_stack_check' >/dev/null
}
check_prometheus() {
  local t j
  prometheus_healthy || return 1
  t="$(curl -sf -m 5 http://127.0.0.1:9090/api/v1/targets)" || return 1
  for j in prometheus dmp-mqtt dmp-kernel dmp-data; do
    grep -q "\"scrapePool\":\"$j\"" <<< "$t" || { echo "  prometheus: no target for job $j"; return 1; }
  done
  printf '  prometheus targets: %s\n' "$(grep -o '"scrapePool":"[^"]*","scrapeUrl":"[^"]*"[^}]*"health":"[a-z]*"' <<< "$t" |
    sed 's/"scrapePool":"\([^"]*\)".*"health":"\([a-z]*\)"/\1=\2/' | tr '\n' ' ')"
}
check_jaeger() {
  local tid sid now i
  tid="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  sid="$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
  now="$(date +%s%N)"
  curl -sf -m 5 -X POST http://127.0.0.1:4318/v1/traces -H 'Content-Type: application/json' -d '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"dmp-stack-check"}}]},"scopeSpans":[{"scope":{"name":"stack.sh"},"spans":[{"traceId":"'"$tid"'","spanId":"'"$sid"'","name":"stack-check","kind":1,"startTimeUnixNano":"'"$now"'","endTimeUnixNano":"'"$((now + 1000000))"'"}]}]}]}' >/dev/null || return 1
  for ((i = 0; i < 20; i++)); do
    if curl -sf -m 2 "http://127.0.0.1:16686/api/traces?service=dmp-stack-check&lookback=1h&limit=100" | grep -q "\"traceID\":\"$tid\""; then
      printf '  jaeger: span %s found via /api/traces?service=dmp-stack-check\n' "$tid"
      return 0
    fi
    sleep 0.5
  done
  return 1
}
check_zookeeper() { zookeeper_healthy; }
check_cluster_server() {
  local port n
  port="$(cluster_http_port "$1")"
  n="$(curl -sf -m 5 "http://127.0.0.1:$port/" --data-binary \
    "SELECT count() FROM system.clusters WHERE cluster = 'dmp'")" || return 1
  [[ "$n" == 4 ]] || { echo "  $1: cluster dmp has $n servers, expected 4"; return 1; }
  cluster_server_healthy "$1" && printf '  %s: shard %s replica %s\n' "$1" \
    "$(curl -sf -m 5 "http://127.0.0.1:$port/" --data-binary "SELECT substitution FROM system.macros WHERE macro = 'shard'")" \
    "$(curl -sf -m 5 "http://127.0.0.1:$port/" --data-binary "SELECT substitution FROM system.macros WHERE macro = 'replica'")"
}

# rocketmq_topics_on SHOW_OUTPUT BROKERS: every listed topic is on that many brokers, with its type
rocketmq_topics_on() {
  local t type n
  while read -r t type _; do
    n="$(grep -cE "^  topic $t +.*message.type=$type[,}]" <<< "$1" || true)"
    ((n == $2)) || { echo "  topic $t with message.type=$type is on $n of $2 brokers"; return 1; }
  done < <(sed 's/#.*//' "$(rocketmq_list topics)" | awk 'NF')
}
check_rocketmq() {
  local out
  out="$(stack_admin show)" || return 1
  printf '%s\n' "$out" | sed 's/^/  /'
  rocketmq_topics_on "$out" 1
}
check_rocketmq-cluster() {
  local out broker
  out="$(rmqc_admin show)" || return 1
  for broker in "${RMQC_BROKERS[@]}"; do
    grep -q "^broker $broker " <<< "$out" || { echo "  $broker is not registered with $RMQC_NAMESRV"; return 1; }
  done
  rocketmq_topics_on "$out" "${#RMQC_BROKERS[@]}" || return 1
  rmqc_proxy_healthy || { echo "  the proxy does not listen on 8091/8090"; return 1; }
  printf '  %s (name server %s): the listed topics and groups on each; proxy gRPC 127.0.0.1:8091\n' \
    "$(grep '^broker ' <<< "$out" | cut -d' ' -f2,3 | paste -sd, -)" "$RMQC_NAMESRV"
}

# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------
# parse_services [--cluster] [SERVICE...]: SERVICES in the canonical start order. Neither: the default
# stack (and, with DEFAULT_WITH_CLUSTER=1, the cluster profile after it).
parse_services() {
  local s cluster=0 named=()
  SERVICES=()
  for s in "$@"; do
    if [[ "$s" == --cluster ]]; then cluster=1; continue; fi
    [[ " ${ALL_SERVICES[*]} ${CLUSTER_SERVICES[*]} " == *" $s "* ]] ||
      die "unknown service '$s' (known: ${ALL_SERVICES[*]} ${CLUSTER_SERVICES[*]}, or --cluster)"
    named+=("$s")
  done
  if ((${#named[@]} == 0 && cluster == 0)); then
    SERVICES=("${ALL_SERVICES[@]}")
    [[ "${DEFAULT_WITH_CLUSTER:-0}" == 1 ]] && SERVICES+=("${CLUSTER_SERVICES[@]}")
    return 0
  fi
  ((cluster)) && named+=("${CLUSTER_SERVICES[@]}")
  # keep the canonical start order
  for s in "${ALL_SERVICES[@]}" "${CLUSTER_SERVICES[@]}"; do
    [[ " ${named[*]} " == *" $s "* ]] && SERVICES+=("$s")
  done
  return 0
}
is_cluster_server() { [[ "$1" == clickhouse-s?r? ]]; }

cmd_up() {
  parse_services "$@"
  local started=$SECONDS s
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$CONF_DIR" "$DATA_DIR" "$BIN_DIR" "$CACHE_DIR"
  trap jaeger_build_abort EXIT
  install_packages "${SERVICES[@]}"
  # the one slow step (cold: a few minutes) runs while the other services start
  [[ " ${SERVICES[*]} " == *" jaeger "* ]] && jaeger_build_start
  local servers=()
  for s in "${SERVICES[@]}"; do
    [[ "$s" == jaeger ]] && continue
    if is_cluster_server "$s"; then servers+=("$s"); continue; fi
    "up_$s"
  done
  if ((${#servers[@]})); then
    # without ZooKeeper the servers start, but cannot replicate
    [[ -n "$(running_pid zookeeper)" ]] || die "zookeeper is not running: bring it up first (up --cluster)"
    up_cluster_servers "${servers[@]}"
  fi
  [[ " ${SERVICES[*]} " == *" jaeger "* ]] && up_jaeger
  log "up done in $((SECONDS - started))s"
  summary
}

cmd_down() {
  DEFAULT_WITH_CLUSTER=1 parse_services "$@"
  local i s p procs brokers
  # reverse order: rocketmq proxy before name server, ...
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    s="${SERVICES[$i]}"
    read -r -a procs <<< "$(service_procs "$s")"
    brokers=()
    for ((p = ${#procs[@]} - 1; p >= 0; p--)); do
      # the cluster profile's brokers (~15 s each to shut down) stop together, before their name server
      if [[ "${procs[$p]}" == rocketmq-broker-? ]]; then stop_proc "${procs[$p]}" 30 & brokers+=($!); continue; fi
      ((${#brokers[@]} == 0)) || wait "${brokers[@]}"
      brokers=()
      stop_proc "${procs[$p]}" 30
    done
  done
  log "down done"
}

proc_line() {
  local name="$1" pid state
  pid="$(running_pid "$name")"
  if [[ -z "$pid" ]]; then
    state=down
  elif port_open "$(proc_ports "$name" | awk '{print $1}')"; then
    state=up
  else
    state=starting
  fi
  printf '%-24s %-9s %-8s %s\n' "$name" "$state" "${pid:--}" "$(proc_ports "$name" | tr ' ' ',')"
  [[ "$state" == up ]]
}

cmd_status() {
  parse_services "$@"
  local s n rc=0
  printf '%-24s %-9s %-8s %s\n' NAME STATE PID PORTS
  for s in "${SERVICES[@]}"; do
    for n in $(service_procs "$s"); do
      proc_line "$n" || rc=3
    done
  done
  return "$rc"
}

cmd_check() {
  parse_services "$@"
  local s failed=()
  for s in "${SERVICES[@]}"; do
    if if is_cluster_server "$s"; then check_cluster_server "$s"; else "check_$s"; fi; then
      log "check $s: OK"
    else
      log "check $s: FAILED"; failed+=("$s")
    fi
  done
  ((${#failed[@]} == 0)) || die "checks failed: ${failed[*]}"
}

cmd_logs() {
  local name="${1:-}"
  [[ -n "$name" ]] || die "usage: $0 logs NAME [-f]   (NAME: mosquitto redis clickhouse prometheus jaeger rocketmq-namesrv rocketmq-proxy jaeger-build zookeeper ${CLUSTER_SERVERS[*]} $(service_procs rocketmq-cluster))"
  local f
  f="$(log_file "$name")"
  [[ -f "$f" ]] || die "no log file $f"
  if [[ "${2:-}" == -f ]]; then tail -n 100 -F "$f"; else tail -n 100 "$f"; fi
}

cmd_queues() {
  if [[ "${1:-}" == --cluster ]]; then shift; STACK_ADMIN_NAMESRV="$RMQC_NAMESRV"; fi
  (($#)) || die "usage: $0 queues [--cluster] TOPIC..."
  stack_admin queues "$@"
}

summary() {
  if [[ " ${SERVICES[*]} " == *" clickhouse-s"* || " ${SERVICES[*]} " == *" zookeeper "* ]]; then
    cat <<EOF

ClickHouse cluster profile ($STACK_DIR)
  zookeeper         127.0.0.1:2181
  cluster dmp       shard 1: http://127.0.0.1:8211 (native 9211), http://127.0.0.1:8212 (native 9212)
                    shard 2: http://127.0.0.1:8221 (native 9221), http://127.0.0.1:8222 (native 9222)
                    (ClickHouse 18.16; DMP: CLICKHOUSE_URL=http://127.0.0.1:8211 CLICKHOUSE_CLUSTER=dmp)
EOF
  fi
  if [[ " ${SERVICES[*]} " == *" rocketmq-cluster "* ]]; then
    cat <<EOF

RocketMQ cluster profile ($STACK_DIR)
  rocketmq-cluster  gRPC proxy 127.0.0.1:8091 (cluster mode)  namesrv 127.0.0.1:9877  (remoting proxy :8090)
                    brokers broker-a 127.0.0.1:10921, broker-b 127.0.0.1:10931
                    (DMP: ROCKETMQ_ENDPOINTS=127.0.0.1:8091)
EOF
  fi
  if [[ " ${SERVICES[*]} " != *" "@(mosquitto|redis|clickhouse|prometheus|jaeger|rocketmq)" "* ]]; then
    echo
    cmd_status "${SERVICES[@]}" || true
    return 0
  fi
  cat <<EOF

DMP stack ($STACK_DIR)
  service           endpoint
  mosquitto         mqtt://127.0.0.1:1883            (MQTT 3.1.1/5, anonymous, \$share/ subscriptions)
  redis             redis://127.0.0.1:6379
  clickhouse        http://127.0.0.1:8123  native 127.0.0.1:9000   (18.16, user default, no password)
  prometheus        http://127.0.0.1:9090            (jobs dmp-mqtt :3001, dmp-kernel :3002, dmp-data :3003)
  jaeger            OTLP grpc 127.0.0.1:4317  OTLP http http://127.0.0.1:4318  query http://127.0.0.1:16686/api
  rocketmq          gRPC proxy 127.0.0.1:8081  namesrv 127.0.0.1:9876  (remoting proxy :8080, broker :10911)
EOF
  echo
  cmd_status "${SERVICES[@]}" || true
}

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    check) cmd_check "$@" ;;
    logs) cmd_logs "$@" ;;
    queues) cmd_queues "$@" ;;
    _build-jaeger) jaeger_build ;;
    -h|--help|help|"") usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
