#!/bin/bash
# slurmctld image entrypoint: supervisord runs slurmctld (--systemd, as
# SlurmUser of slurm.conf) and fakesystemd.
#   SLURMCTLD_OPTIONS  extra slurmctld options; the container's arguments follow them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

main() {
	parse_options SLURMCTLD_OPTIONS
	container_args "$@"
	save_args slurmctld "${OPTS[@]}" "${CARGS[@]}"
	if is_root; then
		# Started as root (docker run, compose): slurmctld runs as SlurmUser
		# from its start, as under slurm-operator (uid 401). Slurm >= 25.05
		# makes `slurmctld --systemd` fatal under any other uid; 24.11 dropped
		# privileges itself, to the same user.
		SLURM_USER=$(slurm_user)
		export SLURM_USER
		if [[ $(id -u "$SLURM_USER") != 0 ]]; then
			run_as slurmctld "$SLURM_USER"
		fi
		slurm_user_paths StateSaveLocation SlurmctldLogFile
	fi
	# slurmctld wants its run directory owned by SlurmUser (as root); under
	# slurm-operator it runs as SlurmUser and /run/slurmctld is an emptyDir.
	run_dir /run/slurmctld
	prepare_fakesystemd
	run_supervisord
}
main "$@"
