#!/bin/sh
# apt.sh: apt-get for RUN steps that mount /var/cache/apt and /var/lib/apt/lists
# as BuildKit cache mounts.
#
#   apt.sh install PKG|./file.deb ...   update the lists, install without recommends
#   apt.sh build-deps [--without PKG,...] CONTROL [HOST_ARCH]
#                                       install the Build-Depends of a debian/control
#                                       (but those --without names: a whole line of
#                                       Build-Depends, for what no image needs) with
#                                       apt's own resolver (apt-get build-dep of a source
#                                       tree: no helper package, no devscripts/equivs);
#                                       with HOST_ARCH other than the build machine's,
#                                       for cross-building to HOST_ARCH (apt-get
#                                       build-dep --host-architecture: libraries of
#                                       HOST_ARCH, tools of the build machine)
#
# Docker-oriented base images (Ubuntu's, Debian's) ship an apt hook,
# /etc/apt/apt.conf.d/docker-clean, that deletes every downloaded package and
# defeats the cache mount. It is set aside while this script runs and put back
# afterwards, so the images keep their usual apt behaviour for their users.
#
# dpkg runs with --force-unsafe-io (no fsync of each unpacked file; a build
# that fails is thrown away whole) and apt fetches no translations: what the
# registries' debian and ubuntu images configure for every apt run
# (/etc/dpkg/dpkg.cfg.d/docker-apt-speedup, apt.conf.d/docker-no-languages),
# said here so that a base without them (a debootstrapped one) builds the same
# way. Neither changes what is installed.
set -eu

export DEBIAN_FRONTEND=noninteractive
hook=/etc/apt/apt.conf.d/docker-clean
aside=/etc/apt/docker-clean.aside

restore() {
	if [ -e "$aside" ]; then
		mv -f "$aside" "$hook"
	fi
}

if [ -e "$hook" ]; then
	mv -f "$hook" "$aside"
fi
trap restore EXIT

apt_get() {
	apt-get -q -y -o APT::Keep-Downloaded-Packages=true -o Dpkg::Use-Pty=0 \
		-o Dpkg::Options::=--force-unsafe-io -o Acquire::Languages=none "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
install)
	apt_get update
	apt_get install --no-install-recommends "$@"
	;;
build-deps)
	without=
	if [ "${1:-}" = --without ]; then
		without=$2
		shift 2
	fi
	[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: apt.sh build-deps [--without PKG,...] CONTROL [HOST_ARCH]" >&2; exit 2; }
	apt_get update
	# apt-get build-dep reads a source tree's debian/control.
	work=$(mktemp -d)
	mkdir "$work/debian"
	control=$work/debian/control
	cp "$1" "$control"
	for package in $(echo "$without" | tr ',' ' '); do
		grep -Eq "^[[:space:]]+$package,?\$" "$control" || { echo "apt.sh: $package is no Build-Depends line of $1" >&2; exit 1; }
		sed -i -E "/^[[:space:]]+$package,?\$/d" "$control"
	done
	build=$(dpkg --print-architecture)
	host=${2:-$build}
	set --
	if [ "$host" != "$build" ]; then
		# The interpreters the build runs are the build machine's: a plain
		# "python3" would be HOST_ARCH's (Multi-Arch: allowed), replace the
		# build machine's and need emulation to run Slurm's scripts.
		sed -i -E 's/(^|[[:space:],|])python3([[:space:]]*([,(|]|$))/\1python3:native\2/g' "$control"
		set -- --host-architecture "$host"
	fi
	apt_get -o Debug::pkgProblemResolver=yes build-dep --no-install-recommends "$@" "$work"
	rm -rf "$work"
	;;
*)
	echo "usage: apt.sh install PKG... | apt.sh build-deps [--without PKG,...] CONTROL [HOST_ARCH]" >&2
	exit 2
	;;
esac

# Logs would only make layers differ between identical builds.
rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log
rm -f /var/cache/debconf/*-old /var/lib/dpkg/*-old
