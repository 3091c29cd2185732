#!/bin/sh
# Evidence for issue 9's "cross-compile or emulate" decision for Slurm's own debian/
# packaging, on the harness engine (test/images/engine.sh), under the shared lock.
# Not part of `npm test`: each phase takes minutes of both cores.
#
#   test/bench/arm64-cross.sh cross      in a throwaway amd64 trixie container: add arm64 as a
#                                   foreign architecture, install crossbuild-essential-arm64,
#                                   resolve Slurm's debian/control Build-Depends for the host
#                                   arch arm64 (apt-get build-dep -s -a arm64, then
#                                   mk-build-deps --host-arch arm64), then
#                                   dpkg-buildpackage --host-arch arm64 -b (bounded), and say
#                                   what broke; the packages' binaries are checked to be aarch64.
#   test/bench/arm64-cross.sh emulated   the same steps natively (amd64) and under qemu (arm64
#                                   container): apt-get update, the slurmd image's runtime
#                                   packages, build-essential, Slurm's ./configure and a fixed
#                                   sample of its C files; prints the emulated/native ratios.
#   test/bench/arm64-cross.sh all        both.
#   (inside-cross, inside-cross-build, inside-sample, inside-compile-sample: the parts that run
#   in the containers; inside-cross-build repeats only the build in a container that has the
#   Build-Depends, inside-compile-sample NAME CC only the compile sample.)
#
# Prints "figure: <name> <seconds>" lines (and keeps every step's log under
# $OUT, default out/bench/arm64). Needs: the harness engine, the base images
# slinky-base/debian:trixie (test/images/base.sh) and slinky-base/debian:trixie-arm64
# (test/images/base.sh slinky-base/debian:trixie-arm64 arm64), arm64 emulation
# (test/emulation.sh enable) and the Slurm stand-in tarball in /var/tmp/slinky-inputs
# (the image harness fetches it). The apt mirror is the one in the base images.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LOCK=${SLINKY_IMAGES_LOCK:-/var/tmp/slinky-images.lock}
ENGINE_DIR=${SLINKY_ENGINE_DIR:-/var/tmp/slinky-engine}
DOCKER=${SLINKY_DOCKER:-/usr/bin/docker}
INPUTS_DIR=${SLINKY_INPUTS_DIR:-/var/tmp/slinky-inputs}
TARBALL=${SLINKY_SLURM_TARBALL:-$INPUTS_DIR/slurm-wlm_24.11.5.orig.tar.gz}
BASE_AMD64=${SLINKY_BASE_IMAGE:-slinky-base/debian:trixie}
BASE_ARM64=${SLINKY_BASE_IMAGE_ARM64:-slinky-base/debian:trixie-arm64}
OUT=${OUT:-$REPO/out/bench/arm64}
# Upper bounds (seconds) of the long steps.
BUILD_TIMEOUT=${BUILD_TIMEOUT:-2400}
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}
# The compile sample: these libcommon sources, compiled by the cross compiler (natively)
# and by arm64's own gcc under emulation.
SAMPLE="xmalloc log pack list bitstring hostlist env parse_config read_config slurm_protocol_defs slurm_protocol_pack"
# Runtime packages of the slurmd image (dockerfiles/debian/Dockerfile, base + slurmd stages).
RUNTIME="tini supervisor procps gawk socat openssh-server authselect sssd sssd-ad sssd-ldap libpam-sss libnss-sss"

# ---- inside the containers ------------------------------------------------

# step NAME COMMAND...: run, log to $LOGS/NAME.log, print "figure: NAME <s> (rc N)".
step() {
  name=$1
  shift
  started=$(date +%s)
  rc=0
  "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  echo "figure: $name $(($(date +%s) - started)) s (rc $rc)"
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$LOGS/$name.log" | sed 's/^/  | /'
  fi
  return "$rc"
}

apt_get() {
  DEBIAN_FRONTEND=noninteractive timeout "$STEP_TIMEOUT" apt-get -q -y -o Dpkg::Use-Pty=0 "$@"
}

unpack() {
  mkdir -p /build/slurm
  tar -xzf /inputs/slurm.tar.gz -C /build/slurm --strip-components=1
}

# compile_sample CC: compile every /logs/sample/*.i with Slurm's flags, two at a time.
compile_sample() {
  mkdir -p /tmp/sample-out
  # shellcheck disable=SC2016 # $1 and $0 belong to the inner shell
  find /logs/sample -name '*.i' -print0 |
    xargs -0 -n 1 -P "$(nproc)" sh -c '"$0" -g -O2 -fstack-protector-strong -fPIC -c "$1" -o "/tmp/sample-out/$(basename "$1" .i).o"' "$1"
}

inside_cross() {
  dpkg --add-architecture arm64
  step apt-update apt_get update
  step cross-toolchain apt_get install --no-install-recommends build-essential crossbuild-essential-arm64 \
    devscripts equivs fakeroot file dpkg-dev
  unpack
  cd /build/slurm
  # What apt would install for Build-Depends with host arch arm64 (a simulation).
  if step build-dep-simulated apt_get build-dep -s -a arm64 --no-install-recommends ./; then
    echo "result: build-dep -a arm64 resolves: $(grep -c '^Inst .*:arm64' "$LOGS/build-dep-simulated.log") arm64 packages," \
      "$(grep '^Inst ' "$LOGS/build-dep-simulated.log" | grep -vc ':arm64') build-arch packages"
  else
    echo "result: build-dep -a arm64 does NOT resolve (log: build-dep-simulated.log)"
  fi
  # The route the Dockerfile takes (build/apt.sh build-deps), for the host arch.
  if ! step mk-build-deps timeout "$STEP_TIMEOUT" mk-build-deps --host-arch arm64 --build-arch amd64 --install --remove \
    --tool 'apt-get -q -y -o Dpkg::Use-Pty=0 -o Debug::pkgProblemResolver=yes --no-install-recommends' debian/control; then
    echo "result: mk-build-deps --host-arch arm64 failed; trying apt-get build-dep -a arm64"
    step build-dep apt_get build-dep -a arm64 --no-install-recommends ./ || {
      echo "result: the arm64 Build-Depends cannot be installed beside the amd64 toolchain"
      return 1
    }
  fi
  cross_build
}

# The build itself, in a container holding the arm64 Build-Depends (inside_cross).
cross_build() {
  [ -d /build/slurm ] || unpack
  cd /build/slurm
  echo 'enable_static=no' >/build/config.site
  CONFIG_SITE=/build/config.site
  DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck nodoc noddebs terse"
  export CONFIG_SITE DEB_BUILD_OPTIONS
  # 1. Slurm's packaging as it is (skip with CROSS_AS_IS=0).
  if [ "${CROSS_AS_IS:-1}" = 1 ]; then
    if step cross-build-as-is timeout "$BUILD_TIMEOUT" dpkg-buildpackage --host-arch arm64 -b -uc -us; then
      echo "result: dpkg-buildpackage --host-arch arm64 -b succeeded as is"
      cross_done=1
    else
      echo "result: dpkg-buildpackage --host-arch arm64 -b fails as is; first errors:"
      grep -n -m 8 -E 'error:|undefined reference|No such file|Error [0-9]' "$LOGS/cross-build-as-is.log" | cut -c1-220 | sed 's/^/  > /' || true
      grep -E '^checking for (h5cc|hdf5.h|H5Fcreate in -lhdf5|main in -lhdf5_hl)' "$LOGS/cross-build-as-is.log" | sed 's/^/  > /' || true
    fi
  fi
  # 2. With the two fixes cross-building needs, from a fresh tree.
  if [ -z "${cross_done:-}" ]; then
    cd /build && rm -rf /build/slurm ./*.deb ./*.buildinfo ./*.changes && unpack && cd /build/slurm
    # (a) Slurm's configure (auxdir/ax_lib_hdf5.m4) compiles its HDF5 test program with the
    #     compiler `h5cc -show` names, Debian's plain `gcc` (the build machine's): hdf5.h and
    #     -lhdf5_hl are "not found", yet the hdf5 plugin is built, and sh5util fails to link
    #     (undefined H5PT*). h5cc takes the compiler from HDF5_CC / HDF5_CLINKER.
    HDF5_CC=aarch64-linux-gnu-gcc HDF5_CLINKER=aarch64-linux-gnu-gcc
    export HDF5_CC HDF5_CLINKER
    # (b) debian/rules installs contribs from obj-$(DEB_BUILD_GNU_TYPE), but dh --builddirectory
    #     builds in obj-$(DEB_HOST_GNU_TYPE): one directory natively, two when cross-building.
    # shellcheck disable=SC2016 # make variables, literally
    sed -i 's/obj-$(DEB_BUILD_GNU_TYPE)/obj-$(DEB_HOST_GNU_TYPE)/g' debian/rules
    echo "workarounds: HDF5_CC=HDF5_CLINKER=aarch64-linux-gnu-gcc; debian/rules obj-\$(DEB_HOST_GNU_TYPE)"
    if step cross-build timeout "$BUILD_TIMEOUT" dpkg-buildpackage --host-arch arm64 -b -uc -us; then
      echo "result: dpkg-buildpackage --host-arch arm64 -b succeeds with the two workarounds"
    else
      echo "result: dpkg-buildpackage --host-arch arm64 -b still fails with the workarounds; first errors:"
      grep -n -m 8 -E 'error:|undefined reference|No such file|Error [0-9]' "$LOGS/cross-build.log" | cut -c1-220 | sed 's/^/  > /' || true
      return 1
    fi
  fi
  grep -E '^checking (whether to build (shared|static)|for (mysql|mariadb)_config|whether we are cross compiling)' \
    "$LOGS"/cross-build*.log | sort -u | sed 's/^/  /' || true
  find /build -maxdepth 1 -name '*.deb' -printf '  deb: %f\n' | sort
  mkdir -p /build/x
  for deb in /build/slurm-smd_*.deb /build/slurm-smd-slurmctld_*.deb /build/slurm-smd-slurmd_*.deb; do
    echo "  $(basename "$deb"): Architecture $(dpkg-deb -f "$deb" Architecture)"
    dpkg-deb -x "$deb" /build/x
  done
  echo "  plugins in slurm-smd: $(find /build/x -path '*/slurm/*.so' | wc -l)"
  find /build/x -path '*/slurm/*.so' -printf '%f\n' | sort >/logs/plugins.txt
  for f in /build/x/usr/sbin/slurmctld /build/x/usr/sbin/slurmd \
    "$(find /build/x -name 'libslurmfull*.so' | head -n 1)" \
    "$(find /build/x -path '*/slurm/select_cons_tres.so' | head -n 1)"; do
    [ -n "$f" ] && echo "  $(file -b "$f" | cut -d, -f1-2): ${f#/build/x}"
  done
  # The compile sample: these libcommon sources, preprocessed for aarch64 against the
  # configured tree, so the same translation units can be compiled by the cross compiler
  # here and by the arm64 gcc under emulation (no configure needed there).
  mkdir -p /logs/sample
  cd /build/slurm/obj-aarch64-linux-gnu/src/common
  for c in $SAMPLE; do
    aarch64-linux-gnu-gcc -E -DHAVE_CONFIG_H -I. -I../.. -I../../slurm -I../../.. -I../../../src/common \
      "../../../src/common/$c.c" -o "/logs/sample/$c.i"
  done
  step cross-compile-sample compile_sample aarch64-linux-gnu-gcc
}

inside_sample() {
  arch=$(dpkg --print-architecture)
  echo "uname -m: $(uname -m), dpkg: $arch"
  step "$arch-apt-update" apt_get update
  # shellcheck disable=SC2086 # a list of package names
  step "$arch-runtime-packages" apt_get install --no-install-recommends $RUNTIME
  step "$arch-build-essential" apt_get install --no-install-recommends build-essential
  if [ "$arch" = arm64 ] && [ -d /logs/sample ]; then
    step arm64-compile-sample compile_sample gcc
    if command -v file >/dev/null; then echo "  sample object: $(file -b /tmp/sample-out/pack.o | cut -d, -f1-2)"; fi
  fi
}

case "${1:-}" in
inside-cross)
  LOGS=/logs
  inside_cross
  exit
  ;;
inside-cross-build)
  LOGS=/logs
  cross_build
  exit
  ;;
inside-compile-sample)
  # NAME CC: only the compile sample (in a container that has CC, or gets build-essential).
  LOGS=/logs
  command -v "$3" >/dev/null || step "$2-build-essential" apt_get install --no-install-recommends build-essential
  step "$2" compile_sample "$3"
  exit
  ;;
inside-sample)
  LOGS=/logs
  inside_sample
  exit
  ;;
cross | emulated | all) ;;
*)
  echo "usage: test/bench/arm64-cross.sh cross | emulated | all" >&2
  exit 2
  ;;
esac

# ---- on the host ----------------------------------------------------------

if [ "${SLINKY_LOCK_HELD:-}" != 1 ]; then
  echo "waiting for $LOCK ($(date -u +%T))" >&2
  SLINKY_LOCK_HELD=1 exec flock "$LOCK" "$0" "$@"
fi
export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
[ -r "$TARBALL" ] || { echo "no Slurm tarball at $TARBALL (run the image harness once)" >&2; exit 1; }
for image in "$BASE_AMD64" "$BASE_ARM64"; do
  "$DOCKER" image inspect "$image" >/dev/null 2>&1 || { echo "no base image $image (test/images/base.sh)" >&2; exit 1; }
done
mkdir -p "$OUT"
name=slinky-bench-arm64-$$
trap '"$DOCKER" rm -f "$name-cross" "$name-amd64" "$name-arm64" >/dev/null 2>&1 || true' EXIT
trap 'exit 143' INT TERM

# container SUFFIX PLATFORM IMAGE MODE
container() {
  mkdir -p "$OUT/$1"
  echo "== $1 ($2, $(date -u +%T))"
  started=$(date +%s)
  sample=
  if [ "$1" = arm64 ] && [ -d "$OUT/cross/sample" ]; then
    sample="-v $OUT/cross/sample:/logs/sample:ro"
  fi
  # shellcheck disable=SC2086 # $sample is one option or none
  { "$DOCKER" run --rm --name "$name-$1" --network host --platform "$2" \
    -v "$TARBALL:/inputs/slurm.tar.gz:ro" -v "$HERE/arm64-cross.sh:/bench/arm64-cross.sh:ro" -v "$OUT/$1:/logs" $sample \
    "$3" sh /bench/arm64-cross.sh "$4" 2>&1; echo "figure: $1-total $(($(date +%s) - started)) s (rc $?)"; } |
    tee "$OUT/$1.out"
}

phase=$1
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
if [ "$phase" = cross ] || [ "$phase" = all ]; then
  container cross linux/amd64 "$BASE_AMD64" inside-cross
fi
if [ "$phase" = emulated ] || [ "$phase" = all ]; then
  status=$("$REPO/test/emulation.sh" status) || { echo "emulated phase skipped: $status" >&2; exit 1; }
  container amd64 linux/amd64 "$BASE_AMD64" inside-sample
  container arm64 linux/arm64 "$BASE_ARM64" inside-sample
  # emulated / native, per step; the compile sample against the cross compiler (native speed).
  figure() { sed -n "s/^figure: $2 \([0-9]*\) s.*/\1/p" "$OUT/$1.out" 2>/dev/null | tail -n 1; }
  ratio() {
    [ -n "$2" ] && [ -n "$3" ] && [ "$2" -gt 0 ] && echo "ratio: $1 emulated/native = $3/$2 = $(awk "BEGIN{printf \"%.1f\", $3/$2}")"
  }
  for s in apt-update runtime-packages build-essential; do
    ratio "$s" "$(figure amd64 "amd64-$s")" "$(figure arm64 "arm64-$s")" || true
  done
  native=$(figure cross cross-compile-sample)
  emulated=$(figure arm64 arm64-compile-sample)
  ratio compile-sample "$native" "$emulated" || true
  build=$(figure cross cross-build)
  if [ -n "$build" ] && [ -n "$native" ] && [ -n "$emulated" ] && [ "$native" -gt 0 ]; then
    echo "estimate: the Slurm package build under emulation ~ cross-build $build s x $emulated/$native = $(awk "BEGIN{printf \"%d\", $build*$emulated/$native}") s"
  fi
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
