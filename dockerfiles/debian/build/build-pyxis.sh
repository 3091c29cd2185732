#!/bin/sh
# build-pyxis.sh SRC OUT VERSION [HOST_ARCH]: build the pyxis SPANK plugin
# package from pyxis's own debian/ (what its `make deb` builds, binary only:
# dpkg-buildpackage -b, where `make deb` runs debuild, which needs devscripts)
# and collect it in OUT as <Package>.deb. With HOST_ARCH other than the build
# machine's architecture, cross-build it (dpkg-buildpackage --host-arch).
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
host_arch=
if [ "$host" != "$build" ]; then
	echo "build-pyxis.sh: cross-building on $build for $host"
	host_arch="-a$host"
fi
# shellcheck disable=SC2086 # $host_arch: an option or nothing
(cd "$work/pyxis" && dpkg-buildpackage $host_arch -b -uc -us)

"$here/collect-debs.sh" "$work" "$out"
pkg=$(find "$out" -name '*pyxis*.deb' | head -n 1)
[ -n "$pkg" ] || { echo "build-pyxis.sh: no pyxis package built" >&2; exit 1; }
"$here/check-version.sh" "$pkg" "$version"
arch=$(dpkg-deb --field "$pkg" Architecture)
[ "$arch" = "$host" ] || { echo "build-pyxis.sh: $(basename "$pkg") is for $arch, not $host" >&2; exit 1; }
rm -rf "$work"
