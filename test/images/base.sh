#!/bin/sh
# Make the harness's debian13 base image without a registry:
#   debootstrap --variant=minbase trixie ROOTFS MIRROR
#   tar --numeric-owner -C ROOTFS -c . | docker import - NAME
# Skips all of it when NAME already exists. Prints the image id (sha256:...).
#
#   base.sh [NAME]     NAME defaults to slinky-base/debian:trixie
# Needs DOCKER_HOST pointing at the harness engine.
set -eu

NAME=${1:-slinky-base/debian:trixie}
SUITE=${SLINKY_BASE_SUITE:-trixie}
DOCKER=${SLINKY_DOCKER:-/usr/bin/docker}
WORK=${SLINKY_ROOTFS_DIR:-/var/tmp/slinky-rootfs}
HERE=$(dirname "$0")

if id=$("$DOCKER" image inspect --format '{{.Id}}' "$NAME" 2>/dev/null); then
  echo "$id"
  exit 0
fi

mirror=$("$HERE/mirror.sh")
mkdir -p "$WORK"
rootfs=$(mktemp -d "$WORK/$SUITE.XXXXXX")
echo "debootstrap $SUITE into $rootfs" >&2
timeout 1200 debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  echo "debootstrap failed; log: $rootfs.log (rootfs left at $rootfs)" >&2
  tail -n 20 "$rootfs.log" >&2
  exit 1
}
tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import - "$NAME" >/dev/null
# The rootfs is only an intermediate; never cross into a mount left inside it.
rm -rf --one-file-system "$rootfs" "$rootfs.log"
"$DOCKER" image inspect --format '{{.Id}}' "$NAME"
