#!/bin/sh
# build-pyxis.sh SRC OUT VERSION [HOST_ARCH]: build the pyxis SPANK plugin
# package with pyxis's own interface (make orig && make deb, i.e. debuild of its
# debian/) and collect it in OUT as <Package>.deb. With HOST_ARCH other than the
# build machine's architecture, cross-build it: make orig, then
# dpkg-buildpackage --host-arch (pyxis's `make deb` has no host architecture).
# slurm-smd-dev (of HOST_ARCH) must be installed.
set -eu

[ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: build-pyxis.sh SRC OUT VERSION [HOST_ARCH]" >&2; exit 2; }
src=$1
out=$2
version=$3
build=$(dpkg --print-architecture)
host=${4:-$build}
here=$(dirname "$0")

work=/tmp/pyxis-build
rm -rf "$work"
mkdir -p "$work"
cp -a "$src" "$work/pyxis"

DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck nodoc noddebs"
export DEB_BUILD_OPTIONS
if [ "$host" = "$build" ]; then
	(cd "$work/pyxis" && make orig && make deb)
else
	echo "build-pyxis.sh: cross-building on $build for $host"
	(cd "$work/pyxis" && make orig && dpkg-buildpackage -a"$host" -b -uc -us)
fi

"$here/collect-debs.sh" "$work" "$out"
pkg=$(find "$out" -name '*pyxis*.deb' | head -n 1)
[ -n "$pkg" ] || { echo "build-pyxis.sh: no pyxis package built" >&2; exit 1; }
"$here/check-version.sh" "$pkg" "$version"
arch=$(dpkg-deb --field "$pkg" Architecture)
[ "$arch" = "$host" ] || { echo "build-pyxis.sh: $(basename "$pkg") is for $arch, not $host" >&2; exit 1; }
rm -rf "$work"
