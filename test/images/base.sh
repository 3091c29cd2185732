#!/bin/sh
# Make the harness's debian13 base image without a registry:
#   debootstrap --variant=minbase trixie ROOTFS MIRROR
#   tar --numeric-owner -C ROOTFS -c . | docker import - NAME
# Skips all of it when NAME already exists. Prints the image id (sha256:...).
#
#   base.sh [NAME] [ARCH]   NAME defaults to slinky-base/debian:trixie, ARCH (a Debian
#                           architecture) to the machine's own. Another ARCH (arm64) is
#                           bootstrapped in two stages: `debootstrap --foreign --arch ARCH`
#                           (downloads and unpacks, natively), then `debootstrap
#                           --second-stage` inside the rootfs under emulation (test/emulation.sh);
#                           the image is imported as linux/ARCH. Each stage's seconds go to stderr.
# Needs DOCKER_HOST pointing at the harness engine.
set -eu

NAME=${1:-slinky-base/debian:trixie}
HOST_ARCH=$(dpkg --print-architecture)
ARCH=${2:-$HOST_ARCH}
SUITE=${SLINKY_BASE_SUITE:-trixie}
DOCKER=${SLINKY_DOCKER:-/usr/bin/docker}
WORK=${SLINKY_ROOTFS_DIR:-/var/tmp/slinky-rootfs}
HERE=$(dirname "$0")

# The image carries this label; an image of that name without it (made some other
# way) is replaced. Bump it when the steps below change.
RECIPE=minbase-clean-1
LABEL=org.slinky-containers.base.recipe

if id=$("$DOCKER" image inspect --format '{{.Id}}' "$NAME" 2>/dev/null); then
  if [ "$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}/{{.Architecture}}" "$NAME")" = "$RECIPE/$ARCH" ]; then
    echo "$id"
    exit 0
  fi
  echo "$NAME exists but was not made by this script ($LABEL != $RECIPE); making it again" >&2
fi

mirror=$("$HERE/mirror.sh")
mkdir -p "$WORK"
rootfs=$(mktemp -d "$WORK/$SUITE.XXXXXX")
failed() {
  echo "debootstrap ($1) failed; log: $rootfs.log (rootfs left at $rootfs)" >&2
  tail -n 20 "$rootfs.log" >&2
  exit 1
}
started=$(date +%s)
if [ "$ARCH" = "$HOST_ARCH" ]; then
  echo "debootstrap $SUITE ($ARCH) into $rootfs" >&2
  timeout 1200 debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || failed "$ARCH"
else
  status=$("$HERE/../emulation.sh" status) || {
    echo "cannot bootstrap $ARCH here: $status (run test/emulation.sh enable)" >&2
    exit 1
  }
  echo "debootstrap --foreign $SUITE ($ARCH) into $rootfs" >&2
  timeout 1200 debootstrap --foreign --arch "$ARCH" --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
    failed "first stage, $ARCH"
  first=$(date +%s)
  echo "first stage: $((first - started)) s; second stage under emulation" >&2
  timeout 2400 chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$rootfs.log" 2>&1 ||
    failed "second stage, $ARCH"
  echo "second stage: $(($(date +%s) - first)) s" >&2
  # The second stage leaves the mirror out of sources.list; the host-arch
  # bootstrap writes it. Keep both images alike.
  echo "deb $mirror $SUITE main" >"$rootfs/etc/apt/sources.list"
fi
echo "debootstrap $ARCH: $(($(date +%s) - started)) s" >&2
# Like a registry's debian image: no downloaded packages, no package lists
# (debootstrap keeps both), so images built on it carry none either.
find "$rootfs/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
rm -f "$rootfs"/var/cache/apt/*.bin
find "$rootfs/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
if [ "$ARCH" = "$HOST_ARCH" ]; then
  tar --numeric-owner -C "$rootfs" -c . |
    "$DOCKER" import --change "LABEL $LABEL=$RECIPE" --change 'CMD ["bash"]' - "$NAME" >/dev/null
else
  # docker 20.10's `import --platform` is ignored (the image says amd64), and BuildKit
  # matches a local base image by its config's architecture: load a one-layer
  # docker-archive whose config says linux/ARCH instead.
  archive=$(mktemp -d "$WORK/archive.XXXXXX")
  tar --numeric-owner -C "$rootfs" -cf "$archive/layer.tar" .
  diff_id=$(sha256sum "$archive/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"%s","os":"linux","created":"%s","config":{"Cmd":["bash"],"Labels":{"%s":"%s"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"debootstrap --foreign --arch %s --variant=minbase %s"}]}' \
    "$ARCH" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$LABEL" "$RECIPE" "$diff_id" "$ARCH" "$SUITE" >"$archive/config.json"
  printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$NAME" >"$archive/manifest.json"
  tar -C "$archive" -c manifest.json config.json layer.tar | "$DOCKER" load >/dev/null
  rm -rf "$archive"
fi
# The rootfs is only an intermediate; never cross into a mount left inside it.
rm -rf --one-file-system "$rootfs" "$rootfs.log"
"$DOCKER" image inspect --format '{{.Id}}' "$NAME"
