#!/bin/sh
# build-slurm.sh SRC OUT VERSION: build Slurm's own Debian packages (slurm-smd*)
# from the source tree SRC and collect them in OUT as <Package>.deb.
# Build dependencies must be installed already (apt.sh build-deps).
set -eu

[ $# -eq 3 ] || { echo "usage: build-slurm.sh SRC OUT VERSION" >&2; exit 2; }
src=$1
out=$2
version=$3
here=$(dirname "$0")

work=/tmp/slurm-build
rm -rf "$work"
mkdir -p "$work"
cp -a "$src" "$work/slurm"

# parallel: debhelper passes -jN to make (upstream's build runs single-threaded).
# nocheck, nodoc: no test suite run, no docs installed where debhelper allows.
# noddebs: no debug-symbol packages (.ddeb on Ubuntu, -dbgsym .deb on Debian).
DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck nodoc noddebs terse"
# config.site (beside this script) turns off static libraries: half the compiling.
CONFIG_SITE="$here/config.site"
export DEB_BUILD_OPTIONS CONFIG_SITE
start=$(date +%s)
(cd "$work/slurm" && debuild --preserve-envvar=DEB_BUILD_OPTIONS --preserve-envvar=CONFIG_SITE \
	--no-lintian -b -uc -us >"$work/debuild.log" 2>&1) || {
	tail -n 200 "$work/debuild.log" >&2
	exit 1
}
echo "build-slurm.sh: debuild took $(($(date +%s) - start)) s with $(nproc) jobs"
grep -E "^checking whether to build (shared|static) libraries" "$work/debuild.log" | sort -u

"$here/collect-debs.sh" "$work" "$out"
"$here/check-version.sh" "$out/slurm-smd.deb" "$version"
rm -rf "$work"
