#!/usr/bin/env bash
# Apache Kafka (KRaft) on 127.0.0.1 from jars that Maven resolves: one node for
# development and the tests, or a three-node cluster for replication and
# failover.  Every command is idempotent.
#
# Single node (broker + controller in one JVM):
#   infra/kafka/kafka.sh install   resolve the jars into $ISOROLL_KAFKA_LIBS
#   infra/kafka/kafka.sh start     install, format storage once, start, wait until ready
#   infra/kafka/kafka.sh stop      stop the broker (SIGTERM, then SIGKILL after 30 s)
#   infra/kafka/kafka.sh status    exit 0 when the broker answers on its port
#   infra/kafka/kafka.sh wipe      stop and delete the data dir
#
# Cluster (three combined broker + controller nodes, ids 1..3, one JVM each;
# replication 3, min.insync.replicas=2, unclean leader election off):
#   infra/kafka/kafka.sh start-cluster       format once, start all three, wait until ready
#   infra/kafka/kafka.sh stop-cluster        stop all three
#   infra/kafka/kafka.sh status-cluster      one line per node; exit 0 when all three answer
#   infra/kafka/kafka.sh wipe-cluster        stop and delete the cluster's data dirs
#   infra/kafka/kafka.sh kill-node ID...     kill -9 the given nodes (a crash)
#   infra/kafka/kafka.sh stop-node ID...     stop the given nodes cleanly
#   infra/kafka/kafka.sh start-node ID...    start the given nodes, wait until ready
#                                            (two at once when the quorum is lost)
#
# Environment (defaults in brackets):
#   ISOROLL_KAFKA_PORT          single node: client port [9092]; the controller uses PORT+1
#   ISOROLL_KAFKA_DIR           single node: data dir, log and pid file [<repo>/.devnet/kafka-$PORT]
#   ISOROLL_KAFKA_CLUSTER_PORT  cluster: first port [9192]; node N serves clients on
#                               PORT+N-1 and its controller on PORT+N+2 (six ports in all)
#   ISOROLL_KAFKA_CLUSTER_DIR   cluster: data dirs node-1..node-3 [<repo>/.devnet/kafka-cluster-$PORT]
#   ISOROLL_KAFKA_LIBS          jar cache [~/.cache/isoroll/kafka-libs-<version>]
#   ISOROLL_KAFKA_HEAP          JVM heap per node [512m single, 384m per cluster node]
#   ISOROLL_KAFKA_JVM_OPTS      more JVM options [none]; the tests' brokers boot with
#                               -XX:TieredStopAtLevel=1 (no C2 compiles: a quicker start)
#   ISOROLL_KAFKA_SESSION_MS    single node: broker.session.timeout.ms [Kafka's 9000]; after a
#                               kill -9 the restarted node waits this long for its old session
#                               to expire before it registers (the tests' crashed broker: 3000)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="${ISOROLL_KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/isoroll/kafka-libs-$version}"
cluster_size=3

say() { echo "kafka: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- which node the commands below act on --------------------------------------------

use_single() {
  node_id=1
  port="${ISOROLL_KAFKA_PORT:-9092}"
  cport=$((port + 1))
  dir="${ISOROLL_KAFKA_DIR:-$repo/.devnet/kafka-$port}"
  heap="${ISOROLL_KAFKA_HEAP:-512m}"
  voters=""
  set_files
}

cluster_port="${ISOROLL_KAFKA_CLUSTER_PORT:-9192}"
cluster_dir="${ISOROLL_KAFKA_CLUSTER_DIR:-$repo/.devnet/kafka-cluster-$cluster_port}"

use_cluster_node() {
  case "$1" in 1|2|3) ;; *) say "no cluster node $1 (ids are 1..$cluster_size)"; exit 2 ;; esac
  node_id=$1
  port=$((cluster_port + node_id - 1))
  cport=$((cluster_port + cluster_size + node_id - 1))
  dir="$cluster_dir/node-$node_id"
  heap="${ISOROLL_KAFKA_HEAP:-384m}"
  voters=""
  local i
  for i in $(seq 1 $cluster_size); do
    voters="${voters:+$voters,}$i@127.0.0.1:$((cluster_port + cluster_size + i - 1))"
  done
  set_files
}

set_files() {
  pidfile="$dir/kafka.pid"
  logfile="$dir/kafka.log"
}

# alive PID: running and not a zombie (infra/proc.sh)
source "$here/../proc.sh"

is_running() { [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; }

install() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v java >/dev/null || { say "java (17+) is required"; exit 1; }
  command -v mvn >/dev/null || { say "maven is required"; exit 1; }
  say "resolving org.apache.kafka:kafka_2.13:$version into $libs"
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$libs/.complete"
}

# Settings that differ between the single node and a cluster node.
replication_config() {
  if [ -z "$voters" ]; then
    cat <<PROPS
controller.quorum.bootstrap.servers=127.0.0.1:$cport
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
PROPS
    if [ -n "${ISOROLL_KAFKA_SESSION_MS:-}" ]; then
      printf 'broker.heartbeat.interval.ms=500\nbroker.session.timeout.ms=%s\n' "$ISOROLL_KAFKA_SESSION_MS"
    fi
  else
    # A dead broker leaves the ISR when the controller stops hearing from it
    # (broker.session.timeout.ms, 9 s by default): 3 s here for quick failover.
    cat <<PROPS
controller.quorum.voters=$voters
default.replication.factor=$cluster_size
offsets.topic.replication.factor=$cluster_size
transaction.state.log.replication.factor=$cluster_size
transaction.state.log.min.isr=2
min.insync.replicas=2
unclean.leader.election.enable=false
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
PROPS
  fi
}

write_config() {
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node_id
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
# Standby sequencers take over one election session after the active one went
# silent (3 s by default); brokers refuse sessions below this (6 s by default).
group.min.session.timeout.ms=1000
message.max.bytes=8388608
log.retention.hours=-1
transaction.max.timeout.ms=900000
$(replication_config)
PROPS
  cat > "$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $logfile
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
}

java_cmd() {
  # shellcheck disable=SC2086  # ISOROLL_KAFKA_JVM_OPTS: several options
  java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC ${ISOROLL_KAFKA_JVM_OPTS:-} -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" "$@"
}

# Format a node's storage once.  The single node is its own quorum
# (--standalone); cluster nodes share one cluster id and the static voter list.
format() {
  if [ -f "$dir/data/meta.properties" ]; then return 0; fi
  local cluster
  if [ -z "$voters" ]; then
    cluster="$(java_cmd kafka.tools.StorageTool random-uuid | tail -n 1)"
    say "formatting $dir/data (cluster $cluster)"
    java_cmd kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" --standalone >/dev/null
  else
    cluster="$(cluster_id)"
    say "formatting $dir/data (cluster $cluster, node $node_id)"
    java_cmd kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" >/dev/null
  fi
}

cluster_id() {
  mkdir -p "$cluster_dir"
  if [ ! -s "$cluster_dir/cluster.id" ]; then
    java_cmd kafka.tools.StorageTool random-uuid | tail -n 1 > "$cluster_dir/cluster.id"
  fi
  cat "$cluster_dir/cluster.id"
}

is_ready() {
  port_open "$port" && grep -q "Kafka Server started" "$logfile" 2>/dev/null
}

wait_ready() {
  local deadline=$((SECONDS + ${1:-90}))
  while [ $SECONDS -lt $deadline ]; do
    if ! is_running; then say "node $node_id exited; last lines of $logfile:"; tail -n 30 "$logfile" >&2 || true; exit 1; fi
    if is_ready; then return 0; fi
    sleep 0.3
  done
  say "node $node_id did not become ready in time; see $logfile"; exit 1
}

# Start the current node without waiting for it (a cluster node needs a quorum
# of its peers before it reports ready).
launch() {
  install
  if is_running; then say "node $node_id already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  if port_open "$port"; then say "port $port is taken by another process"; exit 1; fi
  write_config
  format
  say "starting node $node_id on 127.0.0.1:$port (data $dir, log $logfile)"
  if [ -s "$logfile" ]; then mv -f "$logfile" "$logfile.1"; fi
  : > "$logfile"
  nohup bash -c "exec java -Xms$heap -Xmx$heap -XX:+UseG1GC ${ISOROLL_KAFKA_JVM_OPTS:-} -Djava.awt.headless=true \
      -Dlog4j2.configurationFile='$dir/log4j2.properties' -cp '$libs/*' \
      kafka.Kafka '$dir/server.properties'" >"$dir/stdout.log" 2>&1 &
  echo $! > "$pidfile"
}

start() {
  launch
  wait_ready 120
  say "ready on 127.0.0.1:$port"
}

stop() {
  if ! is_running; then rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.3; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  say "node $node_id stopped"
}

crash() {
  if ! is_running; then rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  rm -f "$pidfile"
  say "node $node_id killed (pid $pid)"
}

# --- cluster commands -------------------------------------------------------------------

all_nodes() { seq 1 $cluster_size; }

# Format and launch the nodes in parallel (a JVM start costs seconds), then
# wait for each: a node is ready only once a quorum of the three is up.
start_nodes() {
  local id pids=() failed=0
  install
  use_cluster_node "$1"; cluster_id >/dev/null  # one id for all, made before they format in parallel
  for id in "$@"; do (use_cluster_node "$id"; launch) & pids+=($!); done
  for id in "${pids[@]}"; do wait "$id" || failed=1; done
  [ "$failed" -eq 0 ] || { say "a node failed to launch"; exit 1; }
  for id in "$@"; do use_cluster_node "$id"; wait_ready 180; say "node $id ready on 127.0.0.1:$port"; done
}

# Stop nodes together: one by one, the last would wait for a quorum that is gone.
stop_nodes() {
  local id pids=()
  for id in "$@"; do (use_cluster_node "$id"; stop) & pids+=($!); done
  for id in "${pids[@]}"; do wait "$id" || true; done
}

# kill -9 the given nodes all at once: a killed JVM takes a second or two to be gone.
kill_nodes() {
  local id
  for id in "$@"; do use_cluster_node "$id"; done  # exits on an unknown id
  for id in "$@"; do (use_cluster_node "$id"; crash) & done
  wait
}

status_cluster() {
  local id up=0
  for id in $(all_nodes); do
    use_cluster_node "$id"
    if is_running && port_open "$port"; then
      echo "node $id up 127.0.0.1:$port pid $(cat "$pidfile")"; up=$((up + 1))
    else
      echo "node $id down 127.0.0.1:$port"
    fi
  done
  [ "$up" -eq "$cluster_size" ]
}

bootstrap_servers() {
  local id out=""
  for id in $(all_nodes); do out="${out:+$out,}127.0.0.1:$((cluster_port + id - 1))"; done
  echo "$out"
}

need_ids() { [ $# -gt 0 ] || { say "name the node ids (1..$cluster_size)"; exit 2; }; }

command="${1:-}"; shift || true
case "$command" in
  install) install ;;
  start) use_single; start ;;
  stop) use_single; stop ;;
  status) use_single; port_open "$port" && is_running ;;
  wipe) use_single; stop; rm -rf "$dir" ;;
  start-cluster) start_nodes $(all_nodes); say "cluster ready: $(bootstrap_servers)" ;;
  stop-cluster) stop_nodes $(all_nodes) ;;
  status-cluster) status_cluster ;;
  wipe-cluster) stop_nodes $(all_nodes); rm -rf "$cluster_dir" ;;
  bootstrap-cluster) bootstrap_servers ;;
  kill-node) need_ids "$@"; kill_nodes "$@" ;;
  stop-node) need_ids "$@"; stop_nodes "$@" ;;
  start-node) need_ids "$@"; start_nodes "$@" ;;
  *) echo "usage: $0 install|start|stop|status|wipe" >&2
     echo "       $0 start-cluster|stop-cluster|status-cluster|wipe-cluster|bootstrap-cluster" >&2
     echo "       $0 kill-node|stop-node|start-node ID..." >&2
     exit 2 ;;
esac
