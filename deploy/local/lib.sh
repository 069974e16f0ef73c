# Shared helpers for deploy/local/<service> scripts. Source it; do not run it.
#
# Conventions every service script follows (see docs/local-stack.md):
#   deploy/local/<svc> install|start|stop|status|env
#   - install: idempotent; downloads only from package registries into $TRACECTL_CACHE/<svc>
#   - start:   idempotent; binds 127.0.0.1 only; data under $TRACECTL_STACK_DIR/<svc>;
#              waits until healthy or exits non-zero naming what failed (and the log file)
#   - stop:    stops by the PID (process group) recorded at start
#   - status:  one line "<svc> <version> healthy|down <endpoint>"; exit 0 only when healthy
#   - env:     KEY=VALUE lines a client needs (endpoints, credentials)
set -euo pipefail

TRACECTL_STACK_DIR=${TRACECTL_STACK_DIR:-$HOME/.local/share/tracectl/stack}
TRACECTL_CACHE=${TRACECTL_CACHE:-$HOME/.cache/tracectl}
DEPLOY_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$DEPLOY_LOCAL_DIR/../.." && pwd)

svc_dirs() {  # svc_dirs NAME -> sets DATA, CACHE, PIDFILE, LOGFILE
  DATA="$TRACECTL_STACK_DIR/$1"
  CACHE="$TRACECTL_CACHE/$1"
  PIDFILE="$DATA/$1.pid"
  LOGFILE="$DATA/$1.log"
  mkdir -p "$DATA" "$CACHE"
}

log() { printf '[deploy/local %s] %s\n' "${SVC:-stack}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_alive() {  # pid_alive PIDFILE
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# spawn PIDFILE LOGFILE cmd...: start cmd in its own session so stop can kill the whole group.
spawn() {
  local pidfile=$1 logfile=$2; shift 2
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
  echo $! >"$pidfile"
}

# spawn_kept PIDFILE LOGFILE cmd...: spawn, and start cmd again whenever it exits, as a service
# manager's Restart=always would (a process that dies with its database comes back once the
# database does). stop_pid's SIGTERM to the group ends the loop after cmd has shut down.
spawn_kept() {
  local pidfile=$1 logfile=$2; shift 2
  spawn "$pidfile" "$logfile" env SVC="${SVC:-stack}" bash -c '. "$0"; keep_running "$@"' \
    "$DEPLOY_LOCAL_DIR/lib.sh" "$(basename "$pidfile" .pid)" "$@"
}

keep_running() {  # keep_running NAME cmd...: the loop spawn_kept runs; back-off 1 s doubling to 30 s
  local name=$1 stopping=0 child rc delay=1 started
  shift
  trap 'stopping=1; kill -TERM "$child" 2>/dev/null || true' TERM INT
  while :; do
    started=$SECONDS
    "$@" & child=$!
    rc=0; wait "$child" || rc=$?
    while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done  # a trapped signal ends wait early
    [ "$stopping" = 0 ] || exit 0
    if [ $((SECONDS - started)) -ge 60 ]; then delay=1; fi
    log "$name exited (status $rc); starting it again in ${delay}s"
    sleep "$delay"
    delay=$((delay * 2 > 30 ? 30 : delay * 2))
  done
}

# stop_pid PIDFILE [GRACE_SECONDS]: SIGTERM the process group, then SIGKILL after the grace period.
stop_pid() {
  local pidfile=$1 grace=${2:-20} pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until TIMEOUT_SECONDS DESCRIPTION cmd...: poll cmd until it succeeds.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    if [ -n "${PIDFILE:-}" ] && [ -f "$PIDFILE" ] && ! pid_alive "$PIDFILE"; then
      log "$what: process exited; last lines of ${LOGFILE:-its log}:"; tail -n 30 "${LOGFILE:-/dev/null}" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# A Python virtualenv owned by a service script, made with uv (fast resolver) when present.
ensure_venv() {  # ensure_venv DIR
  if [ ! -x "$1/bin/python" ]; then
    if command -v uv >/dev/null; then uv venv -q --python "${PYTHON:-python3.11}" "$1"
    else python3 -m venv "$1" && "$1/bin/pip" install -q -U pip; fi
  fi
}
venv_pip_install() {  # venv_pip_install DIR pkgs...
  local venv=$1; shift
  if command -v uv >/dev/null; then uv pip install -q --python "$venv/bin/python" "$@"
  else "$venv/bin/pip" install -q "$@"; fi
}
