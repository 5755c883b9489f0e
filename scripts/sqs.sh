#!/usr/bin/env bash
# Local SQS-compatible server (ElasticMQ, 127.0.0.1 only, in-memory queues)
# for dlq's tests, run from the Maven Central jars.
#
#   scripts/sqs.sh start    fetch jars once, start, wait until it answers an
#                           SQS request; prints the endpoint (http://127.0.0.1:PORT)
#   scripts/sqs.sh stop     stop it (SIGTERM, then SIGKILL); its queues are gone
#   scripts/sqs.sh status   exit 0 and print the endpoint when it answers
#   scripts/sqs.sh endpoint print the endpoint
#
# Only the endpoint goes to stdout; everything else goes to stderr. The
# server checks no credentials: clients still sign their requests, so give
# them any AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the tests use dummies).
#
# Environment:
#   DLQ_SQS_DIR            data dir: config, pid, logs (default <repo>/.sqs)
#   DLQ_SQS_LIBS           jars dir (default <repo>/.sqs/libs)
#   DLQ_SQS_PORT           port (default 19324)
#   DLQ_SQS_REGION         region in queue ARNs (default us-east-1)
#   DLQ_SQS_START_TIMEOUT  seconds to wait for the server (default 60)
#   DLQ_SQS_STOP_TIMEOUT   seconds before SIGKILL (default 20)
#   DLQ_SQS_JAVA_OPTS      extra JVM options
#   JAVA_HOME              which java (else java on PATH); Java 17+
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/tools/sqs"
pom="$tools_dir/pom.xml"

sqs_dir="${DLQ_SQS_DIR:-$repo_root/.sqs}"
libs_dir="${DLQ_SQS_LIBS:-$repo_root/.sqs/libs}"
port="${DLQ_SQS_PORT:-19324}"
region="${DLQ_SQS_REGION:-us-east-1}"
start_timeout="${DLQ_SQS_START_TIMEOUT:-60}"
stop_timeout="${DLQ_SQS_STOP_TIMEOUT:-20}"
host=127.0.0.1
endpoint="http://$host:$port"

conf="$sqs_dir/elasticmq.conf"
pid_file="$sqs_dir/elasticmq.pid"
log_file="$sqs_dir/server.log"

if [[ -n "${JAVA_HOME:-}" ]]; then
  java="$JAVA_HOME/bin/java"
else
  java=java
fi

log() { printf 'sqs.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  echo "usage: scripts/sqs.sh start|stop|status|endpoint" >&2
  exit 2
}

[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) \
  || die "DLQ_SQS_PORT must be a TCP port number, got '$port'"
[[ "$region" =~ ^[a-z0-9-]+$ ]] || die "DLQ_SQS_REGION must look like us-east-1, got '$region'"

# Serialise start/stop of one data dir, and the jar fetch; the lock fds are
# closed for the server, so a lock is held only while this script runs.
lock_dir() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$sqs_dir/.lock"
  flock 9
}
lock_libs() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$libs_dir")"
  exec 8>"$libs_dir.lock"
  flock 8
}

port_open() {
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# The server answers a real SQS request (ListQueues), not only TCP.
server_answers() {
  local status
  status="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET /?Action=ListQueues HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$host" "$port" >&3
    timeout 5 head -n 1 <&3
  )" || return 1
  [[ "$status" == "HTTP/1."?" 200"* ]]
}

is_our_server() {
  local args
  args="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$args" == *"-Dconfig.file=$conf "*"org.elasticmq.server.Main"* ]]
}

# Pid of the server of this data dir, if it runs (pid file, else /proc scan).
server_pid() {
  local pid cmdline
  if [[ -f "$pid_file" ]]; then
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && is_our_server "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  for cmdline in /proc/[0-9]*/cmdline; do
    pid="${cmdline#/proc/}"
    pid="${pid%/cmdline}"
    if is_our_server "$pid"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
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
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven to fetch the ElasticMQ jars"
  log "fetching ElasticMQ jars with Maven into $libs_dir"
  tmp="$libs_dir.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$pom" -Dsqs.libs.dir="$tmp" package \
    >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not fetch the ElasticMQ jars (see above)"
  fi
  rm -f "$tmp.log"
  compgen -G "$tmp/elasticmq-server_2.13-*.jar" >/dev/null || die "no elasticmq-server jar in $tmp"
  printf '%s\n' "$want" >"$tmp/.complete"
  rm -rf "$libs_dir"
  mv "$tmp" "$libs_dir"
}

render_conf() {
  local tpl
  tpl="$(<"$tools_dir/elasticmq.conf.template")"
  tpl="${tpl//@PORT@/"$port"}"
  tpl="${tpl//@REGION@/"$region"}"
  printf '%s\n' "$tpl"
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "server exited during start; last lines of $log_file:"
      tail -n 40 "$log_file" >&2 || true
      return 1
    fi
    if server_answers; then
      return 0
    fi
    sleep 0.3
  done
  log "server did not answer on $endpoint within ${start_timeout}s; last lines of $log_file:"
  tail -n 40 "$log_file" >&2 || true
  return 1
}

stop_pid() {
  local pid=$1 deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "server (pid $pid) still running after ${stop_timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.2
  done
}

cmd_start() {
  local pid
  mkdir -p "$sqs_dir"
  lock_dir

  if pid="$(server_pid)"; then
    if [[ "$(render_conf)" != "$(cat "$conf" 2>/dev/null)" ]]; then
      die "the server of $sqs_dir (pid $pid) runs with other settings (port?): stop it first"
    fi
    wait_ready "$pid" || exit 1
    echo "$pid" >"$pid_file"
    echo "$endpoint"
    return 0
  fi
  rm -f "$pid_file"
  if port_open; then
    die "port $host:$port is in use by another process (set DLQ_SQS_PORT)"
  fi

  command -v "$java" >/dev/null 2>&1 || die "java not found: install Java 17+ or set JAVA_HOME"
  ensure_libs
  render_conf >"$conf.tmp"
  mv "$conf.tmp" "$conf"

  log "starting ElasticMQ on $endpoint (log in $log_file)"
  local -a java_opts=(
    -Xmx256m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true
    -Dconfig.file="$conf"
  )
  if [[ -n "${DLQ_SQS_JAVA_OPTS:-}" ]]; then
    # Word splitting wanted: a list of JVM options.
    # shellcheck disable=SC2206
    java_opts+=($DLQ_SQS_JAVA_OPTS)
  fi
  # Detached: own session, stdin from /dev/null, output to a file (a caller
  # reading our stdout through a pipe is not held open), no lock fds.
  local -a detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" "$java" "${java_opts[@]}" -cp "$libs_dir/*" org.elasticmq.server.Main \
    </dev/null >>"$log_file" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$pid_file"

  local t0=$SECONDS
  if ! wait_ready "$pid"; then
    stop_pid "$pid"
    rm -f "$pid_file"
    exit 1
  fi
  log "ElasticMQ up in $((SECONDS - t0))s (pid $pid)"
  echo "$endpoint"
}

cmd_stop() {
  local pid
  [[ -d "$sqs_dir" ]] || return 0
  lock_dir
  if pid="$(server_pid)"; then
    log "stopping ElasticMQ (pid $pid)"
    stop_pid "$pid"
  fi
  rm -f "$pid_file"
}

cmd_status() {
  if server_pid >/dev/null && server_answers; then
    echo "$endpoint"
    return 0
  fi
  return 1
}

[[ $# -eq 1 ]] || usage
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  endpoint) echo "$endpoint" ;;
  *) usage ;;
esac
