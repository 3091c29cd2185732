#!/bin/sh
# build-pyxis.sh SRC OUT VERSION: build the pyxis SPANK plugin package with
# pyxis's own interface (make orig && make deb, i.e. debuild of its debian/)
# and collect it in OUT as <Package>.deb. slurm-smd-dev must be installed.
set -eu

[ $# -eq 3 ] || { echo "usage: build-pyxis.sh SRC OUT VERSION" >&2; exit 2; }
src=$1
out=$2
version=$3
here=$(dirname "$0")

work=/tmp/pyxis-build
rm -rf "$work"
mkdir -p "$work"
cp -a "$src" "$work/pyxis"

DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck nodoc noddebs"
export DEB_BUILD_OPTIONS
(cd "$work/pyxis" && make orig && make deb)

"$here/collect-debs.sh" "$work" "$out"
pkg=$(find "$out" -name '*pyxis*.deb' | head -n 1)
[ -n "$pkg" ] || { echo "build-pyxis.sh: no pyxis package built" >&2; exit 1; }
"$here/check-version.sh" "$pkg" "$version"
rm -rf "$work"
