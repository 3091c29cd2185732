#!/bin/bash
# slurmctld image entrypoint: supervisord runs slurmctld (--systemd) and fakesystemd.
#   SLURMCTLD_OPTIONS  extra slurmctld options; the container's arguments follow them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

main() {
	parse_options SLURMCTLD_OPTIONS
	container_args "$@"
	save_args slurmctld "${OPTS[@]}" "${CARGS[@]}"
	# slurmctld wants its run directory owned by SlurmUser (as root); under
	# slurm-operator it runs as SlurmUser and /run/slurmctld is an emptyDir.
	run_dir /run/slurmctld
	prepare_fakesystemd
	run_supervisord
}
main "$@"
