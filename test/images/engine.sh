#!/bin/sh
# Start, reuse or stop the harness's Docker engine: Debian's dockerd 20.10 on a
# private socket and data root outside the clone, leaving the host's network alone.
#
#   engine.sh start      prints "reused" if a daemon already answers on the socket,
#                        else starts one and prints "started <pid>"
#   engine.sh stop PID   stops the daemon with that pid, only if it is a dockerd
#                        serving this engine's socket (i.e. one the harness started)
#
# SLINKY_ENGINE_DIR (default /var/tmp/slinky-engine) holds docker.sock, data/, exec/.
set -eu

DIR=${SLINKY_ENGINE_DIR:-/var/tmp/slinky-engine}
SOCK="$DIR/docker.sock"
DOCKERD=${SLINKY_DOCKERD:-/usr/sbin/dockerd}
DOCKER=${SLINKY_DOCKER:-/usr/bin/docker}
START_WAIT=${SLINKY_ENGINE_START_WAIT:-90}

answers() {
  DOCKER_HOST="unix://$SOCK" timeout 10 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

is_our_dockerd() {
  # $1: pid. True if it is a dockerd whose command line names this engine's socket.
  [ -r "/proc/$1/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "dockerd .*unix://$SOCK"
}

case "${1:-}" in
start)
  if answers; then
    echo reused
    exit 0
  fi
  mkdir -p "$DIR/data" "$DIR/exec"
  # A socket or pidfile left by a daemon that died would block the new one.
  if [ -f "$DIR/dockerd.pid" ]; then
    old=$(cat "$DIR/dockerd.pid")
    if is_our_dockerd "$old"; then
      echo "a dockerd (pid $old) holds $DIR but does not answer; not touching it" >&2
      exit 1
    fi
    rm -f "$DIR/dockerd.pid"
  fi
  rm -f "$SOCK"
  "$DOCKERD" --host "unix://$SOCK" --data-root "$DIR/data" --exec-root "$DIR/exec" \
    --pidfile "$DIR/dockerd.pid" --bridge=none --iptables=false --ip-masq=false \
    --ip-forward=false >>"$DIR/dockerd.log" 2>&1 </dev/null &
  pid=$!
  i=0
  while [ "$i" -lt "$START_WAIT" ]; do
    if answers; then
      echo "started $pid"
      exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dockerd exited during start; last log lines:" >&2
      tail -n 20 "$DIR/dockerd.log" >&2
      exit 1
    fi
    i=$((i + 1))
    sleep 1
  done
  echo "dockerd (pid $pid) did not answer within ${START_WAIT}s; stopping it" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
  ;;
stop)
  pid=${2:?usage: engine.sh stop PID}
  if ! is_our_dockerd "$pid"; then
    echo "pid $pid is not this engine's dockerd; nothing stopped" >&2
    exit 1
  fi
  kill "$pid"
  i=0
  while [ "$i" -lt 60 ] && kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "dockerd (pid $pid) still running after 60s" >&2
    exit 1
  fi
  # dockerd leaves its default network namespace mounted; nothing else uses it.
  if grep -q " $DIR/exec/netns/default " /proc/mounts; then
    umount "$DIR/exec/netns/default" || true
  fi
  echo "stopped $pid"
  ;;
*)
  echo "usage: engine.sh start | stop PID" >&2
  exit 2
  ;;
esac
