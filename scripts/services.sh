#!/usr/bin/env bash
# Local S3 (moto_server) for tests and CI, on a free loopback port; stopped by PID, never by name.
#
#   eval "$(scripts/services.sh start)"   # starts moto_server, prints `export S3_ENDPOINT_URL=...` lines
#   scripts/services.sh status            # prints the URL and exits 0 while it runs, else exits 1
#   scripts/services.sh stop              # stops it (SIGTERM, then SIGKILL after 10 s) and removes the state
#
# State lives in $MIXUNLEARN_SERVICES_DIR (default .ci/services): moto.pid, moto.url, moto.env, moto.log.
# moto accepts any credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_DEFAULT_REGION yourself.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${MIXUNLEARN_SERVICES_DIR:-$ROOT/.ci/services}"
PY="$ROOT/.venv/bin/python"; [[ -x "$PY" ]] || PY="$(command -v python3)"
MOTO="$ROOT/.venv/bin/moto_server"; [[ -x "$MOTO" ]] || MOTO="$(command -v moto_server || true)"
PID_FILE="$STATE_DIR/moto.pid"
URL_FILE="$STATE_DIR/moto.url"
ENV_FILE="$STATE_DIR/moto.env"
LOG_FILE="$STATE_DIR/moto.log"

log() { echo "services: $*" >&2; }

# The PID in the pid file, if that process is alive and is a moto_server.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server || return 1
  echo "$pid"
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {  # url timeout_s
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(1)
PYEOF
}

start() {
  mkdir -p "$STATE_DIR"
  if pid="$(running_pid)"; then
    log "moto_server already running (pid $pid) at $(cat "$URL_FILE")"
    cat "$ENV_FILE"
    return 0
  fi
  [[ -n "$MOTO" ]] || { log "moto_server not found (install moto[server] into .venv)"; return 1; }
  local port url
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  "$MOTO" -H 127.0.0.1 -p "$port" >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  if ! wait_ready "$url" 30; then
    log "moto_server did not answer at $url within 30 s; see $LOG_FILE"
    stop
    return 1
  fi
  echo "$url" >"$URL_FILE"
  printf 'export S3_ENDPOINT_URL=%s\nexport MLFLOW_S3_ENDPOINT_URL=%s\n' "$url" "$url" >"$ENV_FILE"
  log "moto_server (pid $(cat "$PID_FILE")) at $url; URL in $URL_FILE"
  cat "$ENV_FILE"
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "moto_server (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped moto_server (pid $pid)"
  else
    log "moto_server is not running"
  fi
  rm -f "$PID_FILE" "$URL_FILE" "$ENV_FILE"
}

status() {
  if pid="$(running_pid)"; then
    echo "$(cat "$URL_FILE" 2>/dev/null || echo '?') (pid $pid)"
  else
    log "moto_server is not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
