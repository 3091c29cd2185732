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
# supervisord closes that process's pipes when it exits. Where PID 1's output
# cannot be opened (a socket), the daemon keeps supervisord's pipes.
if { : >>/proc/1/fd/1 && : >>/proc/1/fd/2; } 2>/dev/null; then
	exec >>/proc/1/fd/1 2>>/proc/1/fd/2
fi
# The user the entrypoint chose for NAME (entrypoint-lib.sh run_as), when root:
# e.g. slurmctld as SlurmUser (Slurm >= 25.05 makes `slurmctld --systemd` fatal
# under any other uid). As another uid (slurm-operator's 401) it runs as that uid.
user_file="${SLINKY_RUN:-/run/slinky}/$name.user"
if [[ -f $user_file && $(id -u) == 0 ]]; then
	user=$(<"$user_file")
	set -- setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
fi
# One write, so that lines of daemons starting together do not interleave.
printf 'daemon-exec.sh: exec%s\n' "$(printf ' %q' "$@" "${args[@]}")"
exec "$@" "${args[@]}"
