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
printf 'daemon-exec.sh: exec'
printf ' %q' "$@" "${args[@]}"
printf '\n'
exec "$@" "${args[@]}"
