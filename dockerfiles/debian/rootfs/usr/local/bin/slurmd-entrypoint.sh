#!/bin/bash
# slurmd image entrypoint: supervisord runs slurmd (--systemd), fakesystemd,
# sshd and sssd.
#   SLURMD_OPTIONS           extra slurmd options; the container's arguments follow them.
#   SSHD_OPTIONS             extra sshd options.
#   SSSD_OPTIONS             extra sssd options.
#   PAM_SLURM_ADOPT_OPTIONS  options of pam_slurm_adopt in /etc/pam.d/sshd.
#   POD_CPUS                 CPU limit of the pod: the rest of the host's cores
#                            become CoreSpecCount (0: unset).
#   POD_MEMORY               memory limit of the pod in MiB: the rest of the
#                            host's memory becomes MemSpecLimit (0: unset).
#   POD_TOPOLOGY             becomes Topology= (dynamic topology).
# The three POD_* items go into slurmd's --conf, merged into a --conf that the
# options already carry. Container arguments are read as shell words
# (entrypoint-lib.sh shell_word): slurm-operator's main branch passes
# Topology='"$SLINKY_TOPOLOGY"' inside --conf, which expands here; an empty
# Topology= is dropped (it makes the node INVALID from Slurm 26.05).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

POD_CPUS=${POD_CPUS:-0}
POD_MEMORY=${POD_MEMORY:-0}
POD_TOPOLOGY=${POD_TOPOLOGY:-}
PAM_SLURM_ADOPT_OPTIONS=${PAM_SLURM_ADOPT_OPTIONS-action_adopt_failure=deny action_generic_failure=deny}

# hw_field NAME: a numeric field of `slurmd -C` (the node's hardware).
HW=""
hw_field() {
	if [[ -z $HW ]]; then
		HW=$(slurmd -C | head -n 1)
	fi
	if [[ $HW =~ (^|[[:space:]])$1=([0-9]+) ]]; then
		echo "${BASH_REMATCH[2]}"
	else
		die "slurmd -C reports no $1: $HW"
	fi
}

# CoreSpecCount: cores slurmd must leave alone, the host's cores minus the
# pod's CPUs (converted to cores).
core_spec_count() {
	local cores threads spec
	cores=$(($(hw_field Boards) * $(hw_field SocketsPerBoard) * $(hw_field CoresPerSocket)))
	threads=$(hw_field ThreadsPerCore)
	spec=$((cores - POD_CPUS / threads))
	echo $((spec > 0 ? spec : 0))
}

# MemSpecLimit: memory (MiB) slurmd must leave alone, the host's minus the pod's.
mem_spec_limit() {
	local spec
	spec=$(($(hw_field RealMemory) - POD_MEMORY))
	echo $((spec > 0 ? spec : 0))
}

# configure_pam_slurm_adopt: let only users with a job on this node in by ssh.
# pam_slurm_adopt goes before common-account, whose pam_localuser would
# otherwise let local users skip it.
configure_pam_slurm_adopt() {
	local pam=/etc/pam.d/sshd
	if grep -q 'pam_slurm_adopt\.so' "$pam"; then
		return
	fi
	if ! grep -q '^@include[[:space:]]*common-account' "$pam"; then
		die "$pam has no '@include common-account' line to put pam_slurm_adopt before"
	fi
	local line="account    required     pam_slurm_adopt.so${PAM_SLURM_ADOPT_OPTIONS:+ $PAM_SLURM_ADOPT_OPTIONS}"
	local tmp
	tmp=$(mktemp)
	awk -v line="$line" '/^@include[[:space:]]*common-account/ && !done { print line; done = 1 } { print }' "$pam" >"$tmp"
	cat "$tmp" >"$pam"
	rm -f "$tmp"
}

main() {
	[[ $POD_CPUS =~ ^[0-9]+$ ]] || die "POD_CPUS must be a whole number: $POD_CPUS"
	[[ $POD_MEMORY =~ ^[0-9]+$ ]] || die "POD_MEMORY must be a whole number (MiB): $POD_MEMORY"

	parse_options SLURMD_OPTIONS
	container_args "$@"
	ARGS=("${OPTS[@]}" "${CARGS[@]}")
	if ((POD_CPUS > 0)); then
		local spec
		spec=$(core_spec_count)
		if ((spec > 0)); then
			add_conf_item "CoreSpecCount=$spec"
		fi
	fi
	if ((POD_MEMORY > 0)); then
		local limit
		limit=$(mem_spec_limit)
		if ((limit > 0)); then
			add_conf_item "MemSpecLimit=$limit"
		fi
	fi
	if [[ -n $POD_TOPOLOGY ]]; then
		add_conf_item "Topology=$POD_TOPOLOGY"
	fi
	drop_empty_conf_item Topology
	save_args slurmd "${ARGS[@]}"
	parse_options SSHD_OPTIONS
	save_args sshd "${OPTS[@]}"
	parse_options SSSD_OPTIONS
	save_args sssd "${OPTS[@]}"

	mkdir -p /run/slurm /var/spool/slurmd
	prepare_fakesystemd
	prepare_sshd
	prepare_sssd
	configure_pam_slurm_adopt
	run_supervisord
}
main "$@"
