#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft combined mode, 127.0.0.1 only)
# for dlq's tests and benchmarks, run from the Maven Central jars.
#
#   scripts/kafka.sh start        fetch jars once, format storage once, start,
#                                 wait until it answers; prints the bootstrap address
#   scripts/kafka.sh stop [--wipe] stop it (SIGTERM, then SIGKILL); --wipe also
#                                 deletes its log storage
#   scripts/kafka.sh status       exit 0 and print the address when it answers
#   scripts/kafka.sh bootstrap    print the address
#   scripts/kafka.sh sasl-bootstrap  print the SASL_PLAINTEXT listener's address
#                                 (mechanism PLAIN, user dlqtest, password
#                                 dlqtest-secret: test credentials)
#
# Only the address goes to stdout; everything else goes to stderr.
#
# Environment:
#   DLQ_KAFKA_DIR              data dir (default <repo>/.kafka)
#   DLQ_KAFKA_LIBS             jars dir (default <repo>/.kafka/libs)
#   DLQ_KAFKA_PORT             broker port (default 19092)
#   DLQ_KAFKA_CONTROLLER_PORT  controller port (default 19093)
#   DLQ_KAFKA_SASL_PORT        SASL_PLAINTEXT listener port (default 19094)
#   DLQ_KAFKA_START_TIMEOUT    seconds to wait for the broker (default 90)
#   DLQ_KAFKA_STOP_TIMEOUT     seconds before SIGKILL (default 30)
#   DLQ_KAFKA_WIPE=1           same as stop --wipe
#   DLQ_KAFKA_JAVA_OPTS        extra JVM options for the broker
#   JAVA_HOME                  which java (else java on PATH); Java 17+
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/tools/kafka"
pom="$tools_dir/pom.xml"

kafka_dir="${DLQ_KAFKA_DIR:-$repo_root/.kafka}"
libs_dir="${DLQ_KAFKA_LIBS:-$repo_root/.kafka/libs}"
port="${DLQ_KAFKA_PORT:-19092}"
controller_port="${DLQ_KAFKA_CONTROLLER_PORT:-19093}"
sasl_port="${DLQ_KAFKA_SASL_PORT:-19094}"
start_timeout="${DLQ_KAFKA_START_TIMEOUT:-90}"
stop_timeout="${DLQ_KAFKA_STOP_TIMEOUT:-30}"
host=127.0.0.1
address="$host:$port"
sasl_address="$host:$sasl_port"

data_dir="$kafka_dir/data"
logs_dir="$kafka_dir/logs"
props="$kafka_dir/server.properties"
pid_file="$kafka_dir/kafka.pid"

if [[ -n "${JAVA_HOME:-}" ]]; then
  java="$JAVA_HOME/bin/java"
else
  java=java
fi

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: scripts/kafka.sh start|stop [--wipe]|status|bootstrap|sasl-bootstrap
EOF
  exit 2
}

# Serialise start/stop of one data dir (tests may call us concurrently), and
# the jar fetch. The lock fds (8, 9) are closed for the broker, so a lock is
# held only while this script runs.
lock_dir() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$kafka_dir/.lock"
  flock 9
}
lock_libs() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$libs_dir")"
  exec 8>"$libs_dir.lock"
  flock 8
}

# True when something accepts TCP connections on $host:$1.
port_open() {
  (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null
}

# Pid of the broker of this data dir, if it runs (pid file, else /proc scan).
broker_pid() {
  local pid cmdline
  if [[ -f "$pid_file" ]]; then
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && is_our_broker "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  for cmdline in /proc/[0-9]*/cmdline; do
    pid="${cmdline#/proc/}"
    pid="${pid%/cmdline}"
    if is_our_broker "$pid"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

is_our_broker() {
  local args
  args="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$args" == *" kafka.Kafka $props"* ]]
}

# Classpath of the jars dir (a JVM wildcard, expanded by java, not the shell).
classpath() { printf '%s/*' "$libs_dir"; }

# A Kafka CLI class from the jars, in a JVM tuned for a short life; it logs
# warnings to <data dir>/logs/tools.log.
tool_cmd=(
  "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$tools_dir/log4j2.properties"
  -Dkafka.logs.dir="$logs_dir" -Dkafka.log.file=tools.log -Ddlq.kafka.log.level=warn
  -cp "$(classpath)"
)
kafka_tool() {
  mkdir -p "$logs_dir"
  "${tool_cmd[@]}" "$@"
}

# Jars: fetched by Maven (cache ~/.m2) into a temp dir, then moved in place,
# so an interrupted fetch or an older version never leaves a mixed classpath.
ensure_libs() {
  local stamp want tmp
  want="$(cksum <"$pom")"
  stamp="$libs_dir/.complete"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  lock_libs
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven to fetch the Kafka jars"
  log "fetching Kafka jars with Maven into $libs_dir"
  tmp="$libs_dir.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$pom" -Dkafka.libs.dir="$tmp" package \
    >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not fetch the Kafka jars (see above)"
  fi
  rm -f "$tmp.log"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $tmp"
  printf '%s\n' "$want" >"$tmp/.complete"
  rm -rf "$libs_dir"
  mv "$tmp" "$libs_dir"
}

render_props() {
  local tpl
  tpl="$(<"$tools_dir/server.properties.template")"
  tpl="${tpl//@PORT@/"$port"}"
  tpl="${tpl//@CONTROLLER_PORT@/"$controller_port"}"
  tpl="${tpl//@SASL_PORT@/"$sasl_port"}"
  tpl="${tpl//@DATA_DIR@/"$kafka_dir"}"
  printf '%s\n' "$tpl"
}

write_props() {
  render_props >"$props.tmp"
  mv "$props.tmp" "$props"
}

ensure_formatted() {
  [[ -f "$data_dir/meta.properties" ]] && return 0
  local cluster_id
  cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid)"
  log "formatting storage in $data_dir (cluster id $cluster_id)"
  kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >&2 \
    || die "formatting storage failed"
}

print_log_tail() {
  local f
  for f in "$logs_dir/broker.out" "$logs_dir/server.log"; do
    if [[ -s "$f" ]]; then
      log "---- last lines of $f ----"
      tail -n 40 "$f" >&2
    fi
  done
}

# The broker answers a real request (not only TCP).
broker_answers() {
  port_open "$port" || return 1
  timeout 30 "${tool_cmd[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$address" \
    --list --command-config "$kafka_dir/tool.properties" >/dev/null 2>&1
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null && ! pid="$(broker_pid)"; then
      log "broker exited during start"
      print_log_tail
      return 1
    fi
    if port_open "$port" && broker_answers; then
      return 0
    fi
    sleep 0.5
  done
  log "broker did not answer on $address within ${start_timeout}s"
  print_log_tail
  return 1
}

cmd_start() {
  local pid
  mkdir -p "$kafka_dir" "$logs_dir"
  lock_dir

  if pid="$(broker_pid)"; then
    if [[ "$(render_props)" != "$(cat "$props" 2>/dev/null)" ]]; then
      die "the broker of $kafka_dir (pid $pid) runs with other settings (ports?): stop it first"
    fi
    wait_ready "$pid" || exit 1
    echo "$pid" >"$pid_file"
    echo "$address"
    return 0
  fi
  rm -f "$pid_file"
  if port_open "$port"; then
    die "port $address is in use by another process (set DLQ_KAFKA_PORT)"
  fi
  if port_open "$controller_port"; then
    die "port $host:$controller_port is in use by another process (set DLQ_KAFKA_CONTROLLER_PORT)"
  fi
  if port_open "$sasl_port"; then
    die "port $sasl_address is in use by another process (set DLQ_KAFKA_SASL_PORT)"
  fi

  command -v "$java" >/dev/null 2>&1 || die "java not found: install Java 17+ or set JAVA_HOME"
  ensure_libs
  write_props
  # Short timeouts for the readiness probe, so one probe never hangs long.
  printf '%s\n' 'request.timeout.ms=5000' 'default.api.timeout.ms=10000' \
    >"$kafka_dir/tool.properties"
  ensure_formatted

  log "starting broker on $address (data in $kafka_dir)"
  local -a java_opts=(
    -Xmx512m -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$tools_dir/log4j2.properties"
    -Dlog4j2.shutdownHookEnabled=false
    -Dkafka.logs.dir="$logs_dir" -Dkafka.log.file=server.log
  )
  if [[ -n "${DLQ_KAFKA_JAVA_OPTS:-}" ]]; then
    # Word splitting wanted: a list of JVM options.
    # shellcheck disable=SC2206
    java_opts+=($DLQ_KAFKA_JAVA_OPTS)
  fi
  # Detached: own session, stdin from /dev/null, stdout/stderr to a file (so a
  # caller reading our stdout through a pipe is not held open), no lock fds.
  local -a detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" "$java" "${java_opts[@]}" -cp "$(classpath)" kafka.Kafka "$props" \
    </dev/null >>"$logs_dir/broker.out" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$pid_file"

  local t0=$SECONDS
  if ! wait_ready "$pid"; then
    stop_pid "$pid"
    rm -f "$pid_file"
    exit 1
  fi
  log "broker up in $((SECONDS - t0))s (pid $pid)"
  echo "$address"
}

stop_pid() {
  local pid=$1 deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "broker (pid $pid) still running after ${stop_timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.2
  done
}

cmd_stop() {
  local wipe="${DLQ_KAFKA_WIPE:-0}" pid
  case "${1:-}" in
    --wipe) wipe=1 ;;
    "") ;;
    *) usage ;;
  esac
  [[ -d "$kafka_dir" ]] || return 0
  lock_dir
  if pid="$(broker_pid)"; then
    log "stopping broker (pid $pid)"
    stop_pid "$pid"
  fi
  rm -f "$pid_file"
  if [[ "$wipe" == 1 ]]; then
    log "wiping $data_dir and $logs_dir"
    rm -rf "$data_dir" "$logs_dir"
  fi
}

cmd_status() {
  if broker_pid >/dev/null && port_open "$port"; then
    echo "$address"
    return 0
  fi
  return 1
}

case "${1:-}" in
  start) [[ $# -eq 1 ]] || usage; cmd_start ;;
  stop) [[ $# -le 2 ]] || usage; shift; cmd_stop "$@" ;;
  status) [[ $# -eq 1 ]] || usage; cmd_status ;;
  bootstrap) [[ $# -eq 1 ]] || usage; echo "$address" ;;
  sasl-bootstrap) [[ $# -eq 1 ]] || usage; echo "$sasl_address" ;;
  *) usage ;;
esac
