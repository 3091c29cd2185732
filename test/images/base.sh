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

# The image carries this label; an image of that name without it (made some other
# way) is replaced. Bump it when the steps below change.
RECIPE=minbase-clean-1
LABEL=org.slinky-containers.base.recipe

if id=$("$DOCKER" image inspect --format '{{.Id}}' "$NAME" 2>/dev/null); then
  if [ "$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$NAME")" = "$RECIPE" ]; then
    echo "$id"
    exit 0
  fi
  echo "$NAME exists but was not made by this script ($LABEL != $RECIPE); making it again" >&2
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
# Like a registry's debian image: no downloaded packages, no package lists
# (debootstrap keeps both), so images built on it carry none either.
find "$rootfs/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
rm -f "$rootfs"/var/cache/apt/*.bin
find "$rootfs/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
tar --numeric-owner -C "$rootfs" -c . |
  "$DOCKER" import --change "LABEL $LABEL=$RECIPE" --change 'CMD ["bash"]' - "$NAME" >/dev/null
# The rootfs is only an intermediate; never cross into a mount left inside it.
rm -rf --one-file-system "$rootfs" "$rootfs.log"
"$DOCKER" image inspect --format '{{.Id}}' "$NAME"
