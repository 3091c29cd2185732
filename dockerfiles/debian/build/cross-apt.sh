#!/bin/sh
# cross-apt.sh: apt on the build machine for cross-building to HOST_ARCH (the
# target's Debian architecture, BuildKit's TARGETARCH). Natively (HOST_ARCH is
# the build machine's own architecture) every command does nothing.
#
#   cross-apt.sh setup HOST_ARCH [URIS]   add HOST_ARCH to dpkg; with URIS (the
#        archive that serves HOST_ARCH for this flavor, from the manifest's
#        flavors.<name>.aptArchives), restrict every deb822 source in
#        /etc/apt/sources.list.d/*.sources to the build architecture and add a
#        copy of it for HOST_ARCH from URIS. Without URIS the base image's
#        sources serve every architecture (Debian's mirrors do).
#   cross-apt.sh toolchain HOST_ARCH      print the cross toolchain's package
#        (crossbuild-essential-HOST_ARCH), nothing natively
#   cross-apt.sh packages HOST_ARCH PKG...   print the packages as apt installs
#        them for HOST_ARCH (PKG:HOST_ARCH), the names as given natively
#   cross-apt.sh rewrite BUILD_ARCH HOST_ARCH URIS FILE   print FILE, a deb822
#        sources file, as setup rewrites it
set -eu

usage() {
	echo "usage: cross-apt.sh setup HOST_ARCH [URIS] | toolchain HOST_ARCH | packages HOST_ARCH PKG... | rewrite BUILD_ARCH HOST_ARCH URIS FILE" >&2
	exit 2
}

# known ARCH: the architectures the recipe cross-builds between.
known() {
	case "$1" in
	amd64 | arm64) ;;
	*)
		echo "cross-apt.sh: unknown architecture '$1' (valid: amd64, arm64)" >&2
		exit 2
		;;
	esac
}

# cross HOST_ARCH: true when HOST_ARCH is not the build machine's architecture.
cross() {
	known "$1"
	[ "$1" != "$(dpkg --print-architecture)" ]
}

# rewrite BUILD_ARCH HOST_ARCH URIS FILE: each stanza with a URIs field and no
# Architectures field gets "Architectures: BUILD_ARCH", and a copy of it
# (comments left out) with URIs replaced and "Architectures: HOST_ARCH" follows.
# Stanzas that name their architectures already and comment-only paragraphs
# are kept as they are.
rewrite() {
	awk -v build="$1" -v host="$2" -v uris="$3" '
	function flush(   i, copy) {
		if (n == 0) return
		if (out++) print ""
		if (has_uris && !has_arch) {
			for (i = 1; i <= n; i++) print lines[i]
			print "Architectures: " build
			print ""
			for (i = 1; i <= n; i++) {
				if (lines[i] ~ /^[ \t]*#/) continue
				if (lines[i] ~ /^URIs:/) { print "URIs: " uris; skip = 1; continue }
				if (skip && lines[i] ~ /^[ \t]/) continue
				skip = 0
				print lines[i]
			}
			print "Architectures: " host
		} else {
			for (i = 1; i <= n; i++) print lines[i]
		}
		n = 0; has_uris = 0; has_arch = 0; skip = 0
	}
	/^[ \t]*$/ { flush(); next }
	{
		lines[++n] = $0
		if ($0 ~ /^URIs:/) has_uris = 1
		if ($0 ~ /^Architectures:/) has_arch = 1
	}
	END { flush() }
	' "$4"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
setup)
	[ $# -eq 1 ] || [ $# -eq 2 ] || usage
	host=$1
	uris=${2:-}
	if ! cross "$host"; then
		echo "cross-apt.sh: native build for $host"
		exit 0
	fi
	build=$(dpkg --print-architecture)
	dpkg --add-architecture "$host"
	echo "cross-apt.sh: building on $build for $host"
	[ -n "$uris" ] || exit 0
	if grep -hqs '^[[:space:]]*deb' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; then
		echo "cross-apt.sh: one-line apt sources (sources.list, *.list) cannot be given a second archive for $host; only deb822 .sources files can" >&2
		exit 1
	fi
	found=
	for file in /etc/apt/sources.list.d/*.sources; do
		[ -f "$file" ] || continue
		rewrite "$build" "$host" "$uris" "$file" >"$file.new"
		mv "$file.new" "$file"
		found=1
		echo "cross-apt.sh: $file: $build from its archive, $host from $uris"
	done
	[ -n "$found" ] || {
		echo "cross-apt.sh: no deb822 sources in /etc/apt/sources.list.d to add $uris to" >&2
		exit 1
	}
	;;
toolchain)
	[ $# -eq 1 ] || usage
	if cross "$1"; then echo "crossbuild-essential-$1"; fi
	;;
packages)
	[ $# -ge 2 ] || usage
	host=$1
	shift
	if cross "$host"; then
		for package in "$@"; do printf '%s:%s\n' "$package" "$host"; done
	else
		printf '%s\n' "$@"
	fi
	;;
rewrite)
	[ $# -eq 4 ] || usage
	known "$1"
	known "$2"
	rewrite "$@"
	;;
*)
	usage
	;;
esac
