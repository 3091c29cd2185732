#!/bin/sh
# apt.sh: apt-get for RUN steps that mount /var/cache/apt and /var/lib/apt/lists
# as BuildKit cache mounts.
#
#   apt.sh install PKG|./file.deb ...   update the lists, install without recommends
#   apt.sh build-deps CONTROL           install the Build-Depends of a debian/control
#
# Docker-oriented base images (Ubuntu's, Debian's) ship an apt hook,
# /etc/apt/apt.conf.d/docker-clean, that deletes every downloaded package and
# defeats the cache mount. It is set aside while this script runs and put back
# afterwards, so the images keep their usual apt behaviour for their users.
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
	apt-get -q -y -o APT::Keep-Downloaded-Packages=true -o Dpkg::Use-Pty=0 "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
install)
	apt_get update
	apt_get install --no-install-recommends "$@"
	;;
build-deps)
	[ $# -eq 1 ] || { echo "usage: apt.sh build-deps CONTROL" >&2; exit 2; }
	apt_get update
	apt_get install --no-install-recommends devscripts equivs
	work=$(mktemp -d)
	cp "$1" "$work/control"
	(cd "$work" && mk-build-deps --install --remove \
		--tool 'apt-get -q -y -o APT::Keep-Downloaded-Packages=true -o Debug::pkgProblemResolver=yes --no-install-recommends' \
		control)
	rm -rf "$work"
	;;
*)
	echo "usage: apt.sh install PKG... | apt.sh build-deps CONTROL" >&2
	exit 2
	;;
esac

# Logs would only make layers differ between identical builds.
rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log
rm -f /var/cache/debconf/*-old /var/lib/dpkg/*-old
