#!/bin/bash
# fakesystemd.sh: the part of systemd that Slurm daemons started with
# --systemd rely on, for containers run by supervisord.
#
# A daemon started with --systemd sends "READY=1\nMAINPID=<pid>" to
# $NOTIFY_SOCKET, also after it re-executes itself (scontrol reconfigure), so
# the process supervisord started may no longer be the daemon. This program
# records the latest MAINPID in a pid file and runs supervisor's pidproxy on
# it: when supervisord stops this program, pidproxy forwards the signal to the
# current daemon.
#
#   fakesystemd.sh          listen (socat, one child per datagram) and proxy
#   fakesystemd.sh record   read one notification on stdin, record its MAINPID
set -euo pipefail

NOTIFY_SOCKET=${NOTIFY_SOCKET:-/run/fakesystemd/notify.sock}
PIDFILE=${FAKESYSTEMD_PIDFILE:-/run/fakesystemd/mainpid}
SLURM_USER=${SLURM_USER:-slurm}

log() {
	printf '%s fakesystemd: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

record() {
	local message pid
	message=$(cat)
	pid=$(printf '%s\n' "$message" | sed -n 's/^MAINPID=\([0-9][0-9]*\)$/\1/p' | tail -n 1)
	if [[ -z $pid ]]; then
		log "notification without MAINPID ignored"
		return 0
	fi
	printf '%s\n' "$pid" >"$PIDFILE.tmp"
	mv -f "$PIDFILE.tmp" "$PIDFILE"
	log "MAINPID=$pid recorded in $PIDFILE"
}

case ${1:-} in
record)
	record
	exit 0
	;;
"") ;;
*)
	echo "usage: fakesystemd.sh [record]" >&2
	exit 2
	;;
esac

# stop: supervisord signals this program's process group. pidproxy forwards
# the signal to the recorded daemon; this script then waits (bounded) for the
# daemon to exit, so that supervisord, and the container, end after it.
# shellcheck disable=SC2317 # called from the trap
stop() {
	local pid="" i
	trap - TERM INT
	[[ -f $PIDFILE ]] && pid=$(<"$PIDFILE")
	kill -TERM "$proxy" "$listener" 2>/dev/null || true
	if [[ $pid =~ ^[0-9]+$ ]]; then
		for ((i = 0; i < STOP_TIMEOUT; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "daemon $pid still running after ${STOP_TIMEOUT}s"
		else
			log "daemon $pid stopped"
		fi
	fi
	exit 0
}

STOP_TIMEOUT=${FAKESYSTEMD_STOP_TIMEOUT:-25}
mkdir -p "$(dirname "$NOTIFY_SOCKET")"
log "listening on $NOTIFY_SOCKET, pid file $PIDFILE"
pidproxy "$PIDFILE" "$(command -v sleep)" infinity &
proxy=$!
socat -u \
	"UNIX-RECVFROM:${NOTIFY_SOCKET},unlink-early,fork,perm=0660,group=$(id -gn "$SLURM_USER")" \
	"EXEC:$0 record" &
listener=$!
trap stop TERM INT
# Either child ending ends this program (supervisord restarts it).
wait -n
log "pidproxy or the listener ended; exiting"
kill -TERM "$proxy" "$listener" 2>/dev/null || true
exit 1
