#!/bin/bash
# pyxis images' entrypoint: two mounts, as upstream's pyxis images make them,
# then the image's own entrypoint. Both are best effort: a mount that fails
# (no CAP_SYS_ADMIN, a read-only /proc) is logged and the daemon starts anyway.
#   PYXIS_MOUNT_TMP=true     mount a tmpfs on /tmp (upstream efc20ba): enroot's
#                            scratch space (ENROOT_TEMP_PATH, /tmp unless set: the
#                            layers `enroot import` converts) and the jobs' and
#                            hooks' temporary files stay in memory, off the node's
#                            container layer.
#   PYXIS_REMOUNT_PROC=true  mount a fresh /proc (upstream 3e1a7e8): on GPU nodes
#                            nvidia-container-cli runs ldconfig through
#                            memfd/fexecve, which fails under the runtime's masked
#                            /proc ("nvidia-container-cli: ldcache error: process
#                            /usr/sbin/ldconfig.real failed"). A fresh /proc drops
#                            that masking: sites that mask /proc deliberately set
#                            PYXIS_REMOUNT_PROC=false.
# Each accepts true/false (also 1/0, yes/no); both default to true.
set -euo pipefail

log() {
	printf '%s pyxis-entrypoint.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

# enabled VAR: the boolean value of VAR (default true); exits on anything else.
enabled() {
	local name=$1 value
	value=${!name:-true}
	case ${value,,} in
	true | 1 | yes) return 0 ;;
	false | 0 | no) return 1 ;;
	*)
		log "error: $name must be true or false, not '$value'"
		exit 1
		;;
	esac
}

# try_mount WHAT VAR MOUNT-ARGS...: mount, or log why not; never fatal.
try_mount() {
	local what=$1 var=$2 out
	shift 2
	if out=$(mount "$@" 2>&1); then
		log "mounted $what ($var=false turns this off)"
	else
		log "warning: could not mount $what, continuing without it: ${out:-mount exited non-zero}"
	fi
}

tmp_mount=false
proc_mount=false
enabled PYXIS_MOUNT_TMP && tmp_mount=true
enabled PYXIS_REMOUNT_PROC && proc_mount=true
if [[ $tmp_mount == true ]]; then
	try_mount "a tmpfs on /tmp" PYXIS_MOUNT_TMP -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
else
	log "PYXIS_MOUNT_TMP=false: /tmp left as it is"
fi
if [[ $proc_mount == true ]]; then
	try_mount "a fresh /proc" PYXIS_REMOUNT_PROC -t proc proc /proc
else
	log "PYXIS_REMOUNT_PROC=false: /proc left as it is"
fi
exec /usr/local/bin/entrypoint.sh "$@"
