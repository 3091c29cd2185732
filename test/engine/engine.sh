#!/bin/bash
# A real Dagger engine for the engine tests, in namespaces of its own.
#
#   engine.sh start   make the engine's root filesystem (once), then start the
#                     engine; prints the socket address (unix://...) when it answers
#   engine.sh stop    stop the engine by its pid and remove everything start added
#   engine.sh exec CMD...  run CMD in the engine's network namespace (its loopback)
#
# The engine's own start-up creates a bridge (dagger0, 10.87.0.0/16), iptables
# rules, dnsmasq and CNI configuration, and bind-mounts its own /etc/resolv.conf
# (cmd/engine/main.go setupNetwork). So it never runs in this machine's own mount
# or network namespace:
#   - mount: a root filesystem of its own (debootstrap of Debian trixie with
#     the tools the engine image carries: runc, CNI plugins, dnsmasq, iptables,
#     git, pigz, tini) entered by chroot inside `unshare --mount --pid`; the
#     engine writes /etc and /usr/bin of that tree only.
#   - network: the namespace slinky-dagger, joined to this machine by one veth
#     pair (198.18.87.1 here, 198.18.87.2 there; 198.18.0.0/15 is the benchmark
#     range, no private range). Its builds reach the package mirror through one
#     MASQUERADE rule (tagged with a comment) and IPv4 forwarding, both recorded
#     and put back by `stop`. Servers the builds need (the registry, the input
#     file server) listen on 198.18.87.1, this machine's end of the pair.
# State stays under $SLINKY_DAGGER_DIR (default /var/tmp/slinky-dagger): the root
# filesystem, the engine state (/var/lib/dagger), its socket and log.
#
# The engine and CLI binaries come from $SLINKY_DAGGER_BIN (engine, dagger,
# dialstdio, dnsname, init), built by test/engine/build-dagger.sh from the Go
# module proxy. The registry mirror in /etc/dagger/engine.json sends docker.io
# to $SLINKY_DAGGER_MIRROR (host:port, plain http; default 198.18.87.1:5000), a
# registry of the tests on this machine's end of the veth pair, so nothing
# reaches Docker Hub. SLINKY_DAGGER_TLS_REGISTRY (host:port) is trusted through
# the CA file SLINKY_DAGGER_REGISTRY_CA. SLINKY_DAGGER_FRESH=1 starts from an
# empty engine state (state-fresh/, wiped; state/ is kept for the next start).
# SLINKY_DAGGER_SDK_CONTENT (an OCI content store) is copied into the engine's
# builtin content, and DAGGER_TYPESCRIPT_SDK_MANIFEST_DIGEST and
# DAGGER_GO_SDK_MANIFEST_DIGEST, when set, reach the engine's environment: the
# builtin SDKs of module mode, which an engine built from source lacks.
set -euo pipefail

DIR=${SLINKY_DAGGER_DIR:-/var/tmp/slinky-dagger}
BIN=${SLINKY_DAGGER_BIN:-$DIR/bin}
NS=slinky-dagger
HOST_IF=sdg-host
NS_IF=sdg-ns
HOST_ADDR=198.18.87.1
NS_ADDR=198.18.87.2
MIRROR=${SLINKY_DAGGER_MIRROR:-$HOST_ADDR:5000}
COMMENT=slinky-dagger-engine
ROOTFS=$DIR/rootfs
ROOTFS_RECIPE=trixie-engine-1
PACKAGES=ca-certificates,git,openssh-client,pigz,xz-utils,iptables,nftables,dnsmasq-base,runc,containernetworking-plugins,tini,mount,e2fsprogs,fuse3,ripgrep,sqlite3,procps,iproute2
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf 'engine.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# The rootfs once (its recipe recorded in a marker), then this run's binaries.
make_rootfs() {
	if [[ $(cat "$ROOTFS/.slinky-recipe" 2>/dev/null) != "$ROOTFS_RECIPE" ]]; then
		local mirror
		mirror=$("$HERE/../images/mirror.sh")
		rm -rf "$ROOTFS.new"
		log "debootstrap trixie into $ROOTFS (once)"
		debootstrap --variant=minbase --include="$PACKAGES" trixie "$ROOTFS.new" "$mirror" >"$DIR/debootstrap.log" 2>&1 ||
			die "debootstrap failed: see $DIR/debootstrap.log"
		rm -rf "$ROOTFS.new/var/cache/apt/archives/"*.deb
		echo "$ROOTFS_RECIPE" >"$ROOTFS.new/.slinky-recipe"
		rm -rf "$ROOTFS"
		mv "$ROOTFS.new" "$ROOTFS"
	fi
	local name
	for name in engine dagger dialstdio dnsname init; do
		[[ -x $BIN/$name ]] || die "$BIN/$name is missing: build it with test/engine/build-dagger.sh"
	done
	install -D -m 0755 "$BIN/engine" "$ROOTFS/usr/local/bin/dagger-engine"
	install -D -m 0755 "$BIN/init" "$ROOTFS/usr/local/bin/dagger-init"
	install -D -m 0755 "$BIN/dialstdio" "$ROOTFS/usr/bin/dial-stdio"
	ln -sfn dial-stdio "$ROOTFS/usr/bin/buildctl"
	install -D -m 0755 "$BIN/dnsname" "$ROOTFS/opt/cni/bin/dnsname"
	ln -sfn /usr/sbin/runc "$ROOTFS/usr/local/bin/runc"
	# The engine points iptables at one of these, in /usr/bin (Debian: /usr/sbin).
	ln -sfn /usr/sbin/xtables-legacy-multi "$ROOTFS/usr/bin/xtables-legacy-multi"
	ln -sfn /usr/sbin/xtables-nft-multi "$ROOTFS/usr/bin/xtables-nft-multi"
	ln -sfn /usr/bin/tini "$ROOTFS/usr/local/bin/tini"
	for name in bridge loopback firewall host-local; do
		ln -sfn "/usr/lib/cni/$name" "$ROOTFS/opt/cni/bin/$name"
	done
	mkdir -p "$ROOTFS/etc/dagger" "$ROOTFS/usr/local/share/dagger/content" "$ROOTFS/var/lib/dagger" "$ROOTFS/run/dagger"
	# Module mode: the builtin SDK images' content, where given (SLINKY_DAGGER_SDK_CONTENT,
	# an OCI content store; the engine finds them by DAGGER_*_SDK_MANIFEST_DIGEST).
	if [[ -n ${SLINKY_DAGGER_SDK_CONTENT:-} ]]; then
		[[ -d $SLINKY_DAGGER_SDK_CONTENT/blobs/sha256 ]] || die "SLINKY_DAGGER_SDK_CONTENT=$SLINKY_DAGGER_SDK_CONTENT has no blobs/sha256"
		cp -a "$SLINKY_DAGGER_SDK_CONTENT/blobs" "$ROOTFS/usr/local/share/dagger/content/"
	fi
	cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
	local tls=""
	if [[ -n ${SLINKY_DAGGER_TLS_REGISTRY:-} ]]; then
		install -m 0644 "${SLINKY_DAGGER_REGISTRY_CA:?SLINKY_DAGGER_TLS_REGISTRY needs SLINKY_DAGGER_REGISTRY_CA}" "$ROOTFS/etc/dagger/registry-ca.pem"
		tls=$(printf ',"%s":{"ca":["/etc/dagger/registry-ca.pem"]}' "$SLINKY_DAGGER_TLS_REGISTRY")
		# The engine's custom CAs, which it adds to its containers' trust stores: the module's
		# own registry client runs in one in module mode.
		install -D -m 0644 "$SLINKY_DAGGER_REGISTRY_CA" "$ROOTFS/usr/local/share/ca-certificates/slinky-test-registry-ca.crt"
	fi
	printf '{"logLevel":"info","registries":{"docker.io":{"mirrors":["%s"]},"%s":{"http":true}%s}}\n' \
		"$MIRROR" "$MIRROR" "$tls" >"$ROOTFS/etc/dagger/engine.json"
}

# The namespace, its veth pair, and the host's NAT rule and forwarding; what
# was there before is recorded in $DIR/host-state for `stop`.
make_network() {
	ip netns list | grep -qw "$NS" && die "network namespace $NS exists: run engine.sh stop first"
	local egress
	egress=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
	[[ -n $egress ]] || die "this machine has no IPv4 default route"
	printf 'ip_forward=%s\negress=%s\n' "$(sysctl -n net.ipv4.ip_forward)" "$egress" >"$DIR/host-state"
	ip netns add "$NS"
	ip link add "$HOST_IF" type veth peer name "$NS_IF"
	ip link set "$NS_IF" netns "$NS"
	ip addr add "$HOST_ADDR/30" dev "$HOST_IF"
	ip link set "$HOST_IF" up
	ip netns exec "$NS" ip addr add "$NS_ADDR/30" dev "$NS_IF"
	ip netns exec "$NS" ip link set "$NS_IF" up
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" ip route add default via "$HOST_ADDR"
	iptables -t nat -A POSTROUTING -s "$NS_ADDR/32" -o "$egress" -j MASQUERADE -m comment --comment "$COMMENT"
	sysctl -qw net.ipv4.ip_forward=1
}

start() {
	mkdir -p "$DIR/run"
	if [[ -f $DIR/engine.pid ]] && kill -0 "$(cat "$DIR/engine.pid")" 2>/dev/null; then
		die "an engine already runs (pid $(cat "$DIR/engine.pid")): run engine.sh stop first"
	fi
	# An empty engine state, as a GitLab job's dind engine starts: a state
	# directory of its own, so the next ordinary start finds its cache again.
	local state=$DIR/state
	if [[ ${SLINKY_DAGGER_FRESH:-} == 1 ]]; then
		state=$DIR/state-fresh
		rm -rf "$state"
	fi
	mkdir -p "$state"
	make_rootfs
	make_network
	rm -f "$DIR/run/engine.sock"
	# New mount and PID namespaces inside the network namespace (entered by
	# nsenter: `ip netns exec` would mount a fresh /sys, without the cgroup
	# hierarchies runc needs); the engine's
	# tree becomes their root by pivot_root (not chroot: the engine setns()es
	# into mount namespaces it made, which resets a chroot to the real root),
	# /proc its own, /dev, /sys and the cgroup hierarchies this machine's, its
	# state and socket directories bind-mounted from $DIR.
	# shellcheck disable=SC2016 # expanded by the inner shells
	setsid nsenter --net="/run/netns/$NS" unshare --mount --pid --fork --propagation private bash -c '
		set -e
		root=$1 dir=$2 state=$3
		mount --bind "$root" "$root"
		mount --rbind /dev "$root/dev"
		mount --rbind /sys "$root/sys"
		mount -t proc proc "$root/proc"
		mount -t tmpfs tmpfs "$root/tmp"
		mount --bind "$state" "$root/var/lib/dagger"
		mount --bind "$dir/run" "$root/run/dagger"
		mkdir -p "$root/.oldroot"
		cd "$root"
		pivot_root . .oldroot
		exec /usr/sbin/chroot . /bin/sh -c "umount -l /.oldroot && exec /usr/local/bin/dagger-engine \"\$@\"" engine \
			--root /var/lib/dagger --addr unix:///run/dagger/engine.sock --oci-max-parallelism num-cpu
	' engine "$ROOTFS" "$DIR" "$state" >"$DIR/engine.log" 2>&1 </dev/null &
	echo $! >"$DIR/engine.pid"
	local i
	for ((i = 0; i < 120; i++)); do
		if [[ -S $DIR/run/engine.sock ]]; then
			echo "unix://$DIR/run/engine.sock"
			return 0
		fi
		kill -0 "$(cat "$DIR/engine.pid")" 2>/dev/null || break
		sleep 1
	done
	log "the engine did not answer; its log:"
	tail -n 40 "$DIR/engine.log" >&2
	stop
	exit 1
}

stop() {
	local pid i
	if [[ -f $DIR/engine.pid ]]; then
		pid=$(cat "$DIR/engine.pid")
		if kill -0 "$pid" 2>/dev/null; then
			# The process group of setsid: ip netns exec, unshare, the engine and its children.
			kill -TERM -- "-$pid" 2>/dev/null || true
			for ((i = 0; i < 30; i++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 1
			done
			kill -KILL -- "-$pid" 2>/dev/null || true
		fi
		rm -f "$DIR/engine.pid"
	fi
	# Whatever still runs in the namespace (a runc container the engine left).
	if ip netns list | grep -qw "$NS"; then
		for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
		ip netns del "$NS"
	fi
	ip link del "$HOST_IF" 2>/dev/null || true
	if [[ -f $DIR/host-state ]]; then
		local ip_forward egress
		ip_forward=$(sed -n 's/^ip_forward=//p' "$DIR/host-state")
		egress=$(sed -n 's/^egress=//p' "$DIR/host-state")
		for ((i = 0; i < 10; i++)); do
			iptables -t nat -D POSTROUTING -s "$NS_ADDR/32" -o "$egress" -j MASQUERADE -m comment --comment "$COMMENT" 2>/dev/null || break
		done
		sysctl -qw "net.ipv4.ip_forward=$ip_forward"
		rm -f "$DIR/host-state"
	fi
	rm -f "$DIR/run/engine.sock"
}

case ${1:-} in
start) start ;;
stop) stop ;;
exec)
	shift
	exec ip netns exec "$NS" "$@"
	;;
*)
	echo "usage: engine.sh start|stop|exec CMD..." >&2
	exit 2
	;;
esac
