#!/bin/bash
# entrypoint-lib.sh: functions shared by the image entrypoints (sourced).
#
# Daemon options arrive as strings in *_OPTIONS variables (shell quoting
# honoured) plus the container's arguments. The entrypoint turns them into an
# argument vector, saved NUL-separated in $SLINKY_RUN/<name>.args;
# daemon-exec.sh, started by supervisord, execs the daemon with exactly that
# vector. Nothing in the options is ever evaluated by a shell.

SLINKY_RUN=${SLINKY_RUN:-/run/slinky}
FAKESYSTEMD_DIR=${FAKESYSTEMD_DIR:-/run/fakesystemd}
SLURM_USER=${SLURM_USER:-slurm}

log() {
	printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${0##*/}" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# parse_options VAR: split the value of the variable VAR into the array OPTS.
# Quotes and backslashes group words as in the shell; nothing is expanded.
parse_options() {
	local var=$1 value tmp
	value=${!var:-}
	# shellcheck disable=SC2034 # OPTS is this function's result
	OPTS=()
	[[ -n ${value//[[:space:]]/} ]] || return 0
	tmp=$(mktemp)
	if ! printf '%s' "$value" | xargs -r printf '%s\0' >"$tmp"; then
		rm -f "$tmp"
		die "cannot parse $var (unbalanced quotes?): $value"
	fi
	# shellcheck disable=SC2034 # OPTS is this function's result
	mapfile -d '' -t OPTS <"$tmp"
	rm -f "$tmp"
}

# save_args NAME ARG...: save the argument vector of daemon NAME.
save_args() {
	local name=$1 file
	shift
	file="$SLINKY_RUN/$name.args"
	mkdir -p "$SLINKY_RUN"
	chmod 0755 "$SLINKY_RUN"
	: >"$file.tmp"
	if (($# > 0)); then
		printf '%s\0' "$@" >"$file.tmp"
	fi
	chmod 0644 "$file.tmp"
	mv -f "$file.tmp" "$file"
	if (($# > 0)); then
		log "$name arguments:$(printf ' %q' "$@")"
	else
		log "$name arguments: (none)"
	fi
}

# prepare_fakesystemd: the notify socket directory, writable by SlurmUser
# (slurmctld notifies after dropping privileges; sackd runs as SlurmUser).
prepare_fakesystemd() {
	mkdir -p "$FAKESYSTEMD_DIR"
	chown "$SLURM_USER:$SLURM_USER" "$FAKESYSTEMD_DIR"
	chmod 0770 "$FAKESYSTEMD_DIR"
	rm -f "$FAKESYSTEMD_DIR/notify.sock" "$FAKESYSTEMD_DIR/mainpid"
}

# prepare_sshd: runtime dirs and host keys, generated at each start (the
# image carries none).
prepare_sshd() {
	mkdir -p /run/sshd
	chmod 0755 /run/sshd
	ssh-keygen -A
}

# prepare_sssd: stale dbus state from a previous start.
prepare_sssd() {
	mkdir -p /run/dbus
	rm -f /run/dbus/pid
}

run_supervisord() {
	exec supervisord -c /etc/supervisor/supervisord.conf
}
