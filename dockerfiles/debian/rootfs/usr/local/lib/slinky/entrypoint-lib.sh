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

# is_root: true when the entrypoint runs as uid 0 (as in a plain `docker run`).
# slurm-operator runs slurmctld and slurmdbd as uid/gid 401 and slurmrestd as
# 65534: then nothing may be chowned, and only the directories the operator
# mounts empty and writable (/run, /run/slurmctld, /var/log/slurm) are written.
is_root() {
	[[ $(id -u) == 0 ]]
}

# run_dir DIR [MODE]: make DIR, owned by SlurmUser when running as root. As
# another user the directory is only made (in a writable mount) and must then
# be writable by that user; nothing is chowned.
run_dir() {
	local dir=$1 mode=${2:-}
	mkdir -p "$dir" || die "cannot create $dir as uid $(id -u): it must be on a writable mount"
	if is_root; then
		chown "$SLURM_USER:$SLURM_USER" "$dir"
	elif [[ ! -w $dir ]]; then
		die "$dir is not writable by uid $(id -u) (mount it writable, e.g. an emptyDir with fsGroup)"
	fi
	if [[ -n $mode ]]; then
		if is_root; then
			chmod "$mode" "$dir"
		else
			# Only the owner may chmod: a mount made by someone else keeps its mode.
			chmod "$mode" "$dir" 2>/dev/null || true
		fi
	fi
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

# container_args ARG...: the container's arguments into the array CARGS; an
# argument wholly enclosed in one pair of single or double quotes loses them.
# slurm-operator passes slurmd `--conf` and `'Key=Val Key=Val'` as two
# arguments, the quotes inside the second (written for upstream's entrypoints,
# which re-parse their arguments with a shell); nothing else is re-parsed, so
# no argument is split or evaluated.
container_args() {
	local arg
	# shellcheck disable=SC2034 # CARGS is this function's result
	CARGS=()
	for arg in "$@"; do
		case $arg in
		\'*\' | \"*\") arg=${arg:1:-1} ;;
		esac
		CARGS+=("$arg")
	done
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
	run_dir "$FAKESYSTEMD_DIR" 0770
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
