#!/bin/sh
# build-slurm.sh SRC OUT VERSION [HOST_ARCH [GPU_PLUGIN...]]: build Slurm's own
# Debian packages (slurm-smd*) from the source tree SRC and collect them in OUT
# as <Package>.deb. With HOST_ARCH other than the build machine's architecture,
# cross-build them for HOST_ARCH (dpkg-buildpackage --host-arch, Debian's cross
# toolchain). Build dependencies must be installed already (apt.sh build-deps
# CONTROL HOST_ARCH). Each GPU_PLUGIN (nvml, rsmi, oneapi) must have been built
# into slurm-smd (configure builds one only when it finds its vendor's headers
# and library): a missing one fails the build, naming what configure said.
set -eu

[ $# -ge 3 ] || { echo "usage: build-slurm.sh SRC OUT VERSION [HOST_ARCH [GPU_PLUGIN...]]" >&2; exit 2; }
src=$1
out=$2
version=$3
build=$(dpkg --print-architecture)
host=${4:-$build}
shift 3
[ $# -eq 0 ] || shift
gpu_plugins=$*
here=$(dirname "$0")

work=/tmp/slurm-build
rm -rf "$work"
mkdir -p "$work"
cp -a "$src" "$work/slurm"

# parallel: debhelper passes -jN to make, N the CPUs. (dpkg-buildpackage's default
# is the same, so upstream's plain debuild runs make -j2 on 2 cores too: measured
# side by side, docs/benchmarks.md "Upstream's build, side by side".)
# nocheck, nodoc: no test suite run, no docs installed where debhelper allows.
# noddebs: no debug-symbol packages (.ddeb on Ubuntu, -dbgsym .deb on Debian).
DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck nodoc noddebs terse"
# config.site (beside this script) turns off static libraries (libtool's second
# compile of every source) and sview (a GTK GUI).
CONFIG_SITE="$here/config.site"
# Only the packages some image installs (the Dockerfile's /debs/slurm-smd*.deb):
# debhelper skips the others (-N), so none is assembled, compressed or collected.
# Slurm's debian/rules still builds the perl API, the pmi and wrapper contribs
# (it has no switch for them); the packages just leave their files out.
NOT_SHIPPED="slurm-smd-doc slurm-smd-sview slurm-smd-libslurm-perl slurm-smd-torque slurm-smd-openlava slurm-smd-libpmi0"
DH_OPTIONS=
for package in $NOT_SHIPPED; do DH_OPTIONS="$DH_OPTIONS -N$package"; done
DH_OPTIONS=${DH_OPTIONS# }
export DEB_BUILD_OPTIONS CONFIG_SITE DH_OPTIONS
# dpkg-buildpackage's options: none more natively.
host_arch=
if [ "$host" != "$build" ]; then
	triplet=$(dpkg-architecture -a"$host" -qDEB_HOST_GNU_TYPE 2>/dev/null)
	# What Slurm's packaging needs to cross-build (natively none of it matters):
	# (a) configure checks HDF5 with the compiler `h5cc -show` names, the build
	#     machine's gcc: hdf5.h and -lhdf5_hl are "not found" for the target,
	#     yet the hdf5 plugin is built and sh5util fails to link (undefined
	#     H5PTopen). h5cc takes its compiler from HDF5_CC / HDF5_CLINKER.
	HDF5_CC=$triplet-gcc
	HDF5_CLINKER=$triplet-gcc
	export HDF5_CC HDF5_CLINKER
	# (b) debian/rules installs contribs from obj-$(DEB_BUILD_GNU_TYPE), while
	#     dh --builddirectory builds in obj-$(DEB_HOST_GNU_TYPE): the same
	#     directory natively, two different ones when cross-building.
	# shellcheck disable=SC2016 # make variables, literally
	sed -i 's/obj-$(DEB_BUILD_GNU_TYPE)/obj-$(DEB_HOST_GNU_TYPE)/g' "$work/slurm/debian/rules"
	# (c) the build runs the build machine's python3 (apt.sh build-deps installed
	#     python3:native): say so in Build-Depends, which dpkg-buildpackage checks.
	sed -i -E 's/(^|[[:space:],|])python3([[:space:]]*([,(|]|$))/\1python3:native\2/g' "$work/slurm/debian/control"
	host_arch="-a$host"
	echo "build-slurm.sh: cross-building on $build for $host ($triplet-gcc)"
fi
start=$(date +%s)
# dpkg-buildpackage passes the environment on (DEB_BUILD_OPTIONS, CONFIG_SITE,
# DH_OPTIONS, HDF5_*): no debuild, so no devscripts in the build stages.
# -d: the build dependencies were installed by apt.sh build-deps, without
# libgtk2.0-dev (sview's only) and librrd-dev (nothing checks it), which
# dpkg-checkbuilddeps would ask for.
# shellcheck disable=SC2086 # $host_arch: an option or nothing
(cd "$work/slurm" && dpkg-buildpackage $host_arch -b -uc -us -d >"$work/build.log" 2>&1) || {
	tail -n 200 "$work/build.log" >&2
	exit 1
}
echo "build-slurm.sh: dpkg-buildpackage took $(($(date +%s) - start)) s with $(nproc) jobs"
grep -E "^checking whether to build (shared|static) libraries" "$work/build.log" | sort -u

"$here/collect-debs.sh" "$work" "$out"
"$here/check-version.sh" "$out/slurm-smd.deb" "$version"
for plugin in $gpu_plugins; do
	dpkg-deb --contents "$out/slurm-smd.deb" | grep -q "/slurm/gpu_$plugin\.so\$" || {
		echo "build-slurm.sh: gpu/$plugin was not built (slurm-smd has no gpu_$plugin.so); configure said:" >&2
		grep -i -E "$plugin|nvidia-ml|rocm|level.zero|ze_loader" "$work/build.log" | grep -E '^(checking|configure)' >&2 || true
		echo "build-slurm.sh: install its headers and library (the flavor's gpu.plugins.$plugin.build in the manifest) or drop it there" >&2
		exit 1
	}
done
[ -z "$gpu_plugins" ] || echo "build-slurm.sh: GPU plugins built: $gpu_plugins"
arch=$(dpkg-deb --field "$out/slurm-smd.deb" Architecture)
[ "$arch" = "$host" ] || { echo "build-slurm.sh: slurm-smd.deb is for $arch, not $host" >&2; exit 1; }
rm -rf "$work"
