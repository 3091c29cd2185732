#!/bin/bash
# pyxis images' entrypoint: optional tweaks, then the image's own entrypoint.
#   PYXIS_REMOUNT_PROC=true  mount a fresh /proc before starting (off by default:
#                            a new /proc undoes the masking of /proc paths that
#                            the container runtime and the NVIDIA toolkit set up).
set -euo pipefail

case ${PYXIS_REMOUNT_PROC:-false} in
true | 1 | yes)
	echo "pyxis-entrypoint.sh: PYXIS_REMOUNT_PROC set: mounting a new /proc" >&2
	mount -t proc proc /proc
	;;
false | 0 | no | "") ;;
*)
	echo "pyxis-entrypoint.sh: PYXIS_REMOUNT_PROC must be true or false, not '$PYXIS_REMOUNT_PROC'" >&2
	exit 1
	;;
esac
exec /usr/local/bin/entrypoint.sh "$@"
