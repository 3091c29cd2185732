#!/bin/bash
# daemon-exec.sh NAME COMMAND [ARG...]: exec COMMAND ARG... followed by the
# arguments the entrypoint saved for NAME (see entrypoint-lib.sh).
set -euo pipefail

if (($# < 2)); then
	echo "usage: daemon-exec.sh NAME COMMAND [ARG...]" >&2
	exit 2
fi
name=$1
shift
file="${SLINKY_RUN:-/run/slinky}/$name.args"
args=()
if [[ -f $file ]]; then
	mapfile -d '' -t args <"$file"
fi
# Log straight to the container's stdout/stderr (those of PID 1) where
# allowed (root), not through supervisord's pipes: a daemon that re-executes
# itself (scontrol reconfigure) outlives the process supervisord started, and
# supervisord closes that process's pipes when it exits.
if [[ -w /proc/1/fd/1 && -w /proc/1/fd/2 ]]; then
	exec >/proc/1/fd/1 2>/proc/1/fd/2
fi
# One write, so that lines of daemons starting together do not interleave.
printf 'daemon-exec.sh: exec%s\n' "$(printf ' %q' "$@" "${args[@]}")"
exec "$@" "${args[@]}"
