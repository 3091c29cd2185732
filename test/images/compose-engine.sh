#!/bin/sh
# A Docker engine for the compose test, in a network namespace of its own: the
# compose project's bridge network, its published ports and every packet between
# its containers stay inside that namespace, which has no link to anything else
# (no veth, no route out: the images are loaded from the harness's engine, not
# pulled). The host's network is not touched.
#
#   compose-engine.sh start      starts Debian's dockerd in namespace slinky-compose;
#                                prints "started <pid>"
#   compose-engine.sh stop PID   stops that dockerd (only if it is the one serving
#                                this engine's socket), then removes the namespace
#   compose-engine.sh exec CMD…  runs CMD in the namespace's network (curl, ssh
#                                to the published ports)
#
# SLINKY_COMPOSE_ENGINE_DIR (default /var/tmp/slinky-compose) holds docker.sock,
# data/ and exec/.
set -eu

DIR=${SLINKY_COMPOSE_ENGINE_DIR:-/var/tmp/slinky-compose}
NS=${SLINKY_COMPOSE_NETNS:-slinky-compose}
SOCK="$DIR/docker.sock"
DOCKERD=${SLINKY_DOCKERD:-/usr/sbin/dockerd}
DOCKER=${SLINKY_DOCKER:-/usr/bin/docker}
START_WAIT=${SLINKY_ENGINE_START_WAIT:-90}

die() {
	echo "compose-engine.sh: $*" >&2
	exit 1
}

answers() {
	DOCKER_HOST="unix://$SOCK" timeout 10 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

is_ours() {
	[ -r "/proc/$1/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "dockerd .*unix://$SOCK"
}

stop_engine() {
	pid=$1
	if is_ours "$pid"; then
		kill -TERM "$pid"
		i=0
		while [ "$i" -lt 60 ] && kill -0 "$pid" 2>/dev/null; do
			sleep 1
			i=$((i + 1))
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	if ip netns list | grep -qw "$NS"; then
		# Whatever is left in the namespace (containerd shims of killed containers).
		for left in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$left" 2>/dev/null || true; done
		ip netns del "$NS"
	fi
}

case "${1:-}" in
start)
	# An engine of an interrupted run (its pidfile names this socket's dockerd) goes first.
	if [ -f "$DIR/dockerd.pid" ] && is_ours "$(cat "$DIR/dockerd.pid")"; then
		echo "compose-engine.sh: stopping the engine an interrupted run left (pid $(cat "$DIR/dockerd.pid"))" >&2
		stop_engine "$(cat "$DIR/dockerd.pid")"
	fi
	ip netns list | grep -qw "$NS" && die "network namespace $NS exists and is not this engine's: not touching it"
	answers && die "a dockerd already answers on $SOCK"
	mkdir -p "$DIR/data" "$DIR/exec"
	rm -f "$SOCK" "$DIR/dockerd.pid"
	ip netns add "$NS"
	ip netns exec "$NS" ip link set lo up
	# nsenter, not `ip netns exec`: that would mount a fresh /sys without the
	# cgroup hierarchies dockerd needs. Inside the namespace dockerd writes no
	# iptables rules and forwards nothing: the compose network is one bridge.
	setsid nsenter --net="/run/netns/$NS" "$DOCKERD" \
		--host "unix://$SOCK" --data-root "$DIR/data" --exec-root "$DIR/exec" \
		--pidfile "$DIR/dockerd.pid" --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
		>"$DIR/dockerd.log" 2>&1 </dev/null &
	pid=$!
	i=0
	while [ "$i" -lt "$START_WAIT" ]; do
		if answers; then
			echo "started $pid"
			exit 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
		i=$((i + 1))
	done
	kill -TERM "$pid" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	tail -n 30 "$DIR/dockerd.log" >&2
	die "dockerd did not answer on $SOCK within ${START_WAIT}s"
	;;
stop)
	[ $# -eq 2 ] || die "usage: compose-engine.sh stop PID"
	stop_engine "$2"
	;;
exec)
	shift
	[ $# -gt 0 ] || die "usage: compose-engine.sh exec CMD..."
	exec nsenter --net="/run/netns/$NS" "$@"
	;;
*)
	die "usage: compose-engine.sh start | stop PID | exec CMD..."
	;;
esac
