#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft: broker + controller in one JVM) on 127.0.0.1,
# from jars that Maven resolves.  Every command is idempotent.
#
#   infra/kafka/kafka.sh install   resolve the jars into $ISOROLL_KAFKA_LIBS
#   infra/kafka/kafka.sh start     install, format storage once, start, wait until ready
#   infra/kafka/kafka.sh stop      stop the broker (SIGTERM, then SIGKILL after 30 s)
#   infra/kafka/kafka.sh status    exit 0 when the broker answers on its port
#   infra/kafka/kafka.sh wipe      stop and delete the data dir
#
# Environment (defaults in brackets):
#   ISOROLL_KAFKA_PORT        client port [9092]; the controller uses PORT+1
#   ISOROLL_KAFKA_DIR         data dir, log file and pid file [<repo>/.devnet/kafka-$PORT]
#   ISOROLL_KAFKA_LIBS        jar cache [~/.cache/isoroll/kafka-libs-<version>]
#   ISOROLL_KAFKA_HEAP        JVM heap [512m]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
port="${ISOROLL_KAFKA_PORT:-9092}"
cport=$((port + 1))
dir="${ISOROLL_KAFKA_DIR:-$repo/.devnet/kafka-$port}"
libs="${ISOROLL_KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/isoroll/kafka-libs-$version}"
heap="${ISOROLL_KAFKA_HEAP:-512m}"
pidfile="$dir/kafka.pid"
logfile="$dir/kafka.log"

say() { echo "kafka: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

is_running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

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

write_config() {
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
message.max.bytes=8388608
log.retention.hours=-1
transaction.max.timeout.ms=900000
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
  java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" "$@"
}

format() {
  if [ -f "$dir/data/meta.properties" ]; then return 0; fi
  local cluster
  cluster="$(java_cmd kafka.tools.StorageTool random-uuid | tail -n 1)"
  say "formatting $dir/data (cluster $cluster)"
  java_cmd kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" --standalone >/dev/null
}

wait_ready() {
  local deadline=$((SECONDS + ${1:-90}))
  while [ $SECONDS -lt $deadline ]; do
    if ! is_running; then say "broker exited; last lines of $logfile:"; tail -n 30 "$logfile" >&2 || true; exit 1; fi
    if port_open "$port" && grep -q "Kafka Server started\|KafkaRaftServer.*started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$logfile" 2>/dev/null; then
      return 0
    fi
    sleep 0.3
  done
  say "broker did not become ready in time; see $logfile"; exit 1
}

start() {
  install
  if is_running; then say "already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  if port_open "$port"; then say "port $port is taken by another process"; exit 1; fi
  write_config
  format
  say "starting on 127.0.0.1:$port (data $dir, log $logfile)"
  : > "$logfile"
  nohup bash -c "exec java -Xms$heap -Xmx$heap -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile='$dir/log4j2.properties' -cp '$libs/*' \
      kafka.Kafka '$dir/server.properties'" >"$dir/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  wait_ready 120
  say "ready on 127.0.0.1:$port"
}

stop() {
  if ! is_running; then rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  say "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) port_open "$port" && is_running ;;
  wipe) stop; rm -rf "$dir" ;;
  *) echo "usage: $0 install|start|stop|status|wipe" >&2; exit 2 ;;
esac
