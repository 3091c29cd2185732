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

# slurm_conf_value KEY: the value of KEY in slurm.conf ($SLURM_CONF, default
# /etc/slurm/slurm.conf), as slurmctld reads it: keys are case-insensitive, the
# last assignment wins, '#' starts a comment. Empty when unset or no file.
slurm_conf_value() {
	local key=$1 conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
	[[ -r $conf ]] || return 0
	awk -v key="$key" '
		{ sub(/#.*/, "") }
		{
			for (i = 1; i <= NF; i++) {
				eq = index($i, "=")
				if (eq > 1 && tolower(substr($i, 1, eq - 1)) == tolower(key)) value = substr($i, eq + 1)
			}
		}
		END { print value }' "$conf"
}

# slurm_user: SlurmUser of slurm.conf (default slurm), which must exist here.
slurm_user() {
	local user
	user=$(slurm_conf_value SlurmUser)
	user=${user:-slurm}
	id -u "$user" >/dev/null 2>&1 || die "SlurmUser '$user' (slurm.conf) is not a user of this image"
	echo "$user"
}

# run_as NAME USER: daemon-exec.sh starts daemon NAME as USER (when it runs as
# root). Without it a daemon runs as whoever supervisord runs as.
run_as() {
	local name=$1 user=$2
	mkdir -p "$SLINKY_RUN"
	printf '%s\n' "$user" >"$SLINKY_RUN/$name.user"
	log "$name runs as $user"
}

# run_dir DIR [MODE]: make DIR, owned by SlurmUser when running as root. As
# another user the directory is only made (in a writable mount) and must then
# be writable by that user; nothing is chowned.
run_dir() {
	local dir=$1 mode=${2:-}
	mkdir -p "$dir" || die "cannot create $dir as uid $(id -u): it must be on a writable mount"
	if is_root; then
		chown "$SLURM_USER:" "$dir"
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

# slurm_user_paths DIR-KEY FILE-KEY: as root, the directory slurm.conf's
# DIR-KEY names (e.g. StateSaveLocation) made and owned by SlurmUser, and the
# file FILE-KEY names (e.g. SlurmctldLogFile) made in its directory and owned
# by SlurmUser, as Slurm wants them; a daemon that runs as SlurmUser from its
# start cannot make or take them itself. Unset keys are left alone, and so is
# everything when not root (slurm-operator mounts these writable).
slurm_user_paths() {
	local dir file
	is_root || return 0
	dir=$(slurm_conf_value "$1")
	file=$(slurm_conf_value "$2")
	if [[ $dir == /* ]]; then
		mkdir -p "$dir" || die "cannot create $1 $dir"
		chown "$SLURM_USER:" "$dir"
	fi
	if [[ $file == /* && ! -p $file ]]; then
		mkdir -p "$(dirname "$file")" || die "cannot create the directory of $2 $file"
		touch "$file" && chown "$SLURM_USER:" "$file"
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

# shell_word ARG: ARG read as one shell word, as upstream's entrypoints read
# their arguments through `bash -c`, without evaluating anything: single quotes
# are literal, double quotes group, a backslash escapes (outside single quotes),
# and $NAME / ${NAME} expand from the environment (unset: empty). No command
# substitution, arithmetic, globbing or word splitting: the result is one word,
# in WORD. slurm-operator passes slurmd `--conf` and `'Key=Val Key=Val'` (quotes
# included), and from its main branch `'... Topology='"$SLINKY_TOPOLOGY"''`.
shell_word() {
	local arg=$1 out="" quote="" c name i n=${#1}
	for ((i = 0; i < n; i++)); do
		c=${arg:i:1}
		if [[ $quote == "'" ]]; then
			if [[ $c == "'" ]]; then quote=""; else out+=$c; fi
			continue
		fi
		case $c in
		"'")
			if [[ -z $quote ]]; then quote="'"; else out+=$c; fi
			;;
		'"')
			if [[ -z $quote ]]; then quote='"'; else quote=""; fi
			;;
		\\)
			((i + 1 < n)) || die "argument ends in a backslash: $arg"
			i=$((i + 1))
			out+=${arg:i:1}
			;;
		'$')
			if [[ ${arg:i+1} =~ ^\{([A-Za-z_][A-Za-z0-9_]*)\} ]]; then
				name=${BASH_REMATCH[1]}
				i=$((i + ${#name} + 2))
			elif [[ ${arg:i+1} =~ ^([A-Za-z_][A-Za-z0-9_]*) ]]; then
				name=${BASH_REMATCH[1]}
				i=$((i + ${#name}))
			elif [[ ${arg:i+1:1} == "(" || ${arg:i+1:1} == "{" ]]; then
				die "only \$NAME and \${NAME} are expanded, not: $arg"
			else
				out+=$c
				continue
			fi
			out+=${!name-}
			;;
		*) out+=$c ;;
		esac
	done
	[[ -z $quote ]] || die "unbalanced $quote quote in argument: $arg"
	# shellcheck disable=SC2034 # WORD is this function's result
	WORD=$out
}

# container_args ARG...: the container's arguments into the array CARGS, each
# read by shell_word (one argument stays one argument).
container_args() {
	local arg
	# shellcheck disable=SC2034 # CARGS is this function's result
	CARGS=()
	for arg in "$@"; do
		shell_word "$arg"
		CARGS+=("$WORD")
	done
}

# add_conf_item ITEM: append ITEM to the value of --conf in ARGS, or add one.
add_conf_item() {
	local item=$1 i n=${#ARGS[@]}
	for ((i = 0; i < n; i++)); do
		case ${ARGS[i]} in
		--conf=*)
			if [[ ${ARGS[i]} == --conf= ]]; then
				ARGS[i]="--conf=$item"
			else
				ARGS[i]="${ARGS[i]} $item"
			fi
			return
			;;
		--conf)
			if ((i + 1 < n)); then
				ARGS[i + 1]="${ARGS[i + 1]:+${ARGS[i + 1]} }$item"
				return
			fi
			;;
		esac
	done
	ARGS+=(--conf "$item")
}

# drop_empty_conf_item KEY: remove "KEY=" with an empty value from the --conf
# values in ARGS (an empty Topology= makes a node INVALID from Slurm 26.05,
# SlinkyProject/containers#20); a --conf left empty is removed with its value.
drop_empty_conf_item() {
	local key=$1 i n=${#ARGS[@]} value item kept items out=()
	for ((i = 0; i < n; i++)); do
		case ${ARGS[i]} in
		--conf | --conf=*)
			if [[ ${ARGS[i]} == --conf ]]; then
				((i + 1 < n)) || { out+=("${ARGS[i]}"); continue; }
				value=${ARGS[i + 1]}
				i=$((i + 1))
			else
				value=${ARGS[i]#--conf=}
			fi
			kept=""
			read -ra items <<<"$value"
			for item in "${items[@]}"; do
				[[ ${item,,} == "${key,,}=" ]] && continue
				kept+="${kept:+ }$item"
			done
			[[ -n $kept ]] && out+=(--conf "$kept")
			;;
		*) out+=("${ARGS[i]}") ;;
		esac
	done
	ARGS=("${out[@]}")
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
