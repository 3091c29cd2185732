#!/bin/sh
# apt.sh: apt-get for RUN steps that mount /var/cache/apt (and, but where the
# lists are given: --listed, /var/lib/apt/lists) as BuildKit cache mounts.
#
#   apt.sh [--listed] install PKG|./file.deb ...
#                                       install without recommends
#   apt.sh [--listed] build-deps [--without PKG,...] CONTROL [HOST_ARCH]
#                                       install the Build-Depends of a debian/control
#                                       (but those --without names: a whole line of
#                                       Build-Depends, for what no image needs) with
#                                       apt's own resolver (apt-get build-dep of a source
#                                       tree: no helper package, no devscripts/equivs);
#                                       with HOST_ARCH other than the build machine's,
#                                       for cross-building to HOST_ARCH (apt-get
#                                       build-dep --host-architecture: libraries of
#                                       HOST_ARCH, tools of the build machine)
#   apt.sh lists                        update the lists only (a stage that keeps
#                                       them in its own filesystem: no cache mount on
#                                       /var/lib/apt/lists)
#   apt.sh components COMPONENT...      add apt components (contrib, non-free) to
#                                       every source of the base image (deb822
#                                       Components: fields and one-line deb entries),
#                                       each once; the lists are not updated
#
# install and build-deps update the lists first. With --listed they use the
# lists already in /var/lib/apt/lists (an earlier step's of the same throwaway
# stage, or the apt-lists stage's, bind-mounted read-only) and update them only
# when they cannot serve the install (no lists there, or a package they name
# has left the mirror since they were fetched): when apt-get failed without
# installing anything (dpkg's status unchanged), it is run once more after an
# update. apt-get fetches every package before it unpacks any.
#
# Where /var/lib/apt/lists is read-only (the apt-lists stage's, bind-mounted:
# a read-write bind mount makes Dagger's dockerBuild panic, see the
# Dockerfile), an update goes to /var/cache/apt/lists, in the step's cache
# mount, and apt is pointed there.
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

# apt's cache of the lists (srcpkgcache.bin) is kept beside them, so that the
# steps given them do not each read the whole index again.
lists=/var/lib/apt/lists
with_cache() {
	apt_get -o Dir::State::Lists="$lists" -o Dir::Cache::srcpkgcache="$lists/srcpkgcache.bin" "$@"
}

# Update the lists, into the step's cache mount where the given ones are read-only.
update() {
	if ! [ -w "$lists" ]; then
		lists=/var/cache/apt/lists
		mkdir -p "$lists/partial"
	fi
	with_cache update
}

# apt-get VERB ARGS... (install, build-dep) with lists that can serve it.
with_lists() {
	if [ "$listed" = false ]; then
		update
		with_cache "$@"
		return
	fi
	before=$(cksum </var/lib/dpkg/status)
	if with_cache "$@"; then
		return
	fi
	# Only a failure that installed nothing (a download or a resolution with
	# these lists) is tried again, once, with updated lists.
	[ "$(cksum </var/lib/dpkg/status)" = "$before" ] || exit 100
	echo "apt.sh: the lists given cannot serve this; updating them" >&2
	update
	with_cache "$@"
}

listed=false
if [ "${1:-}" = --listed ]; then
	listed=true
	shift
fi
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
install)
	with_lists install --no-install-recommends "$@"
	;;
lists)
	if [ $# -gt 0 ] || [ "$listed" = true ]; then
		echo "usage: apt.sh lists" >&2
		exit 2
	fi
	update
	;;
components)
	[ "$listed" = false ] || { echo "usage: apt.sh components COMPONENT..." >&2; exit 2; }
	for component in "$@"; do
		case "$component" in
		'' | *[!a-z-]*) echo "apt.sh: '$component' is not an apt component (like non-free)" >&2; exit 2 ;;
		esac
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			sed -i -E "/^Components:/{/[[:space:]]$component([[:space:]]|\$)/!s/\$/ $component/}" "$f"
		done
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] || continue
			sed -i -E "/^deb(-src)?[[:space:]]/{/[[:space:]]$component([[:space:]]|\$)/!s/[[:space:]]*\$/ $component/}" "$f"
		done
	done
	exit 0
	;;
build-deps)
	without=
	if [ "${1:-}" = --without ]; then
		without=$2
		shift 2
	fi
	[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: apt.sh [--listed] build-deps [--without PKG,...] CONTROL [HOST_ARCH]" >&2; exit 2; }
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
	with_lists -o Debug::pkgProblemResolver=yes build-dep --no-install-recommends "$@" "$work"
	rm -rf "$work"
	;;
*)
	echo "usage: apt.sh [--listed] install PKG... | apt.sh [--listed] build-deps [--without PKG,...] CONTROL [HOST_ARCH] | apt.sh lists | apt.sh components COMPONENT..." >&2
	exit 2
	;;
esac

# Logs would only make layers differ between identical builds.
rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log
rm -f /var/cache/debconf/*-old /var/lib/dpkg/*-old
