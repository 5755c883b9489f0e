#!/usr/bin/env bash
# Local S3-compatible server (S3Proxy over jclouds' filesystem provider,
# 127.0.0.1 only) for dlq's S3 store tests, run from the Maven Central jars.
#
#   scripts/s3.sh start          fetch jars once, start, wait until it answers;
#                                prints the endpoint (http://127.0.0.1:PORT)
#   scripts/s3.sh stop [--wipe]  stop it (SIGTERM, then SIGKILL); --wipe also
#                                deletes its buckets
#   scripts/s3.sh status         exit 0 and print the endpoint when it answers
#   scripts/s3.sh endpoint       print the endpoint
#
# Only the endpoint goes to stdout; everything else goes to stderr.
#
# Requests are signed (AWS signature v2 or v4) with the test credentials
# access key `dlqtest`, secret `dlqtest-secret` (test credentials, nothing
# else accepts them); clients find them in the environment
# (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), as with real S3.
#
# Environment:
#   DLQ_S3_DIR            data dir (default <repo>/.s3): buckets in data/
#   DLQ_S3_LIBS           jars dir (default <repo>/.s3/libs)
#   DLQ_S3_PORT           port (default 19380)
#   DLQ_S3_START_TIMEOUT  seconds to wait for the server (default 60)
#   DLQ_S3_STOP_TIMEOUT   seconds before SIGKILL (default 20)
#   DLQ_S3_WIPE=1         same as stop --wipe
#   DLQ_S3_JAVA_OPTS      extra JVM options
#   DLQ_S3_LOG_LEVEL      S3Proxy's log level (default WARN; DEBUG logs requests)
#   JAVA_HOME             which java (else java on PATH); Java 17+
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/tools/s3"
pom="$tools_dir/pom.xml"

s3_dir="${DLQ_S3_DIR:-$repo_root/.s3}"
libs_dir="${DLQ_S3_LIBS:-$s3_dir/libs}"
port="${DLQ_S3_PORT:-19380}"
start_timeout="${DLQ_S3_START_TIMEOUT:-60}"
stop_timeout="${DLQ_S3_STOP_TIMEOUT:-20}"
host=127.0.0.1
endpoint="http://$host:$port"

data_dir="$s3_dir/data"
logs_dir="$s3_dir/logs"
props="$s3_dir/s3proxy.properties"
pid_file="$s3_dir/s3proxy.pid"

if [[ -n "${JAVA_HOME:-}" ]]; then
  java="$JAVA_HOME/bin/java"
else
  java=java
fi

log() { printf 's3.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  echo 'usage: scripts/s3.sh start|stop [--wipe]|status|endpoint' >&2
  exit 2
}

# Serialise start/stop of one data dir, and the jar fetch. The lock fds
# (8, 9) are closed for the server, so a lock is held only while we run.
lock_dir() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$s3_dir/.lock"
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

is_our_server() {
  local args
  args="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$args" == *" org.gaul.s3proxy.Main --properties $props"* ]]
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
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven to fetch the S3Proxy jars"
  log "fetching S3Proxy jars with Maven into $libs_dir"
  tmp="$libs_dir.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$pom" -Ds3proxy.libs.dir="$tmp" package \
    >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not fetch the S3Proxy jars (see above)"
  fi
  rm -f "$tmp.log"
  compgen -G "$tmp/s3proxy-*.jar" >/dev/null || die "no s3proxy jar in $tmp"
  printf '%s\n' "$want" >"$tmp/.complete"
  rm -rf "$libs_dir"
  mv "$tmp" "$libs_dir"
}

render_props() {
  cat <<EOF
s3proxy.endpoint=$endpoint
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=dlqtest
s3proxy.credential=dlqtest-secret
jclouds.provider=filesystem
jclouds.identity=dlqtest
jclouds.credential=dlqtest-secret
jclouds.filesystem.basedir=$data_dir
EOF
}

write_props() {
  render_props >"$props.tmp"
  mv "$props.tmp" "$props"
}

print_log_tail() {
  if [[ -s "$logs_dir/s3proxy.out" ]]; then
    log "---- last lines of $logs_dir/s3proxy.out ----"
    tail -n 40 "$logs_dir/s3proxy.out" >&2
  fi
}

# The server answers HTTP (an unsigned request gets an S3 error document,
# which is an answer).
server_answers() {
  port_open || return 1
  local code
  code="$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$endpoint/" 2>/dev/null)" || return 1
  [[ "$code" =~ ^[2-4][0-9][0-9]$ ]]
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "S3Proxy exited during start"
      print_log_tail
      return 1
    fi
    if server_answers; then
      return 0
    fi
    sleep 0.3
  done
  log "S3Proxy did not answer on $endpoint within ${start_timeout}s"
  print_log_tail
  return 1
}

cmd_start() {
  local pid
  mkdir -p "$s3_dir" "$data_dir" "$logs_dir"
  lock_dir

  if pid="$(server_pid)"; then
    if [[ "$(render_props)" != "$(cat "$props" 2>/dev/null)" ]]; then
      die "the S3Proxy of $s3_dir (pid $pid) runs with other settings (port?): stop it first"
    fi
    wait_ready "$pid" || exit 1
    echo "$pid" >"$pid_file"
    echo "$endpoint"
    return 0
  fi
  rm -f "$pid_file"
  if port_open; then
    die "port $host:$port is in use by another process (set DLQ_S3_PORT)"
  fi

  command -v "$java" >/dev/null 2>&1 || die "java not found: install Java 17+ or set JAVA_HOME"
  command -v curl >/dev/null 2>&1 || die "curl not found: it checks that S3Proxy answers"
  ensure_libs
  write_props

  log "starting S3Proxy on $endpoint (buckets in $data_dir)"
  local -a java_opts=(
    -Xmx256m -XX:+UseSerialGC -Djava.awt.headless=true
    -Dlogback.configurationFile="$tools_dir/logback.xml"
  )
  if [[ -n "${DLQ_S3_JAVA_OPTS:-}" ]]; then
    # Word splitting wanted: a list of JVM options.
    # shellcheck disable=SC2206
    java_opts+=($DLQ_S3_JAVA_OPTS)
  fi
  # Detached: own session, stdin from /dev/null, output to a file (so a
  # caller reading our stdout through a pipe is not held open), no lock fds.
  local -a detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" "$java" "${java_opts[@]}" \
    -cp "$libs_dir/*" org.gaul.s3proxy.Main --properties "$props" \
    </dev/null >>"$logs_dir/s3proxy.out" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$pid_file"

  local t0=$SECONDS
  if ! wait_ready "$pid"; then
    stop_pid "$pid"
    rm -f "$pid_file"
    exit 1
  fi
  log "S3Proxy up in $((SECONDS - t0))s (pid $pid)"
  echo "$endpoint"
}

stop_pid() {
  local pid=$1 deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "S3Proxy (pid $pid) still running after ${stop_timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.2
  done
}

cmd_stop() {
  local wipe="${DLQ_S3_WIPE:-0}" pid
  case "${1:-}" in
    --wipe) wipe=1 ;;
    "") ;;
    *) usage ;;
  esac
  [[ -d "$s3_dir" ]] || return 0
  lock_dir
  if pid="$(server_pid)"; then
    log "stopping S3Proxy (pid $pid)"
    stop_pid "$pid"
  fi
  rm -f "$pid_file"
  if [[ "$wipe" == 1 ]]; then
    log "wiping $data_dir and $logs_dir"
    rm -rf "$data_dir" "$logs_dir"
  fi
}

cmd_status() {
  if server_pid >/dev/null && server_answers; then
    echo "$endpoint"
    return 0
  fi
  return 1
}

case "${1:-}" in
  start) [[ $# -eq 1 ]] || usage; cmd_start ;;
  stop) [[ $# -le 2 ]] || usage; shift; cmd_stop "$@" ;;
  status) [[ $# -eq 1 ]] || usage; cmd_status ;;
  endpoint) [[ $# -eq 1 ]] || usage; echo "$endpoint" ;;
  *) usage ;;
esac
