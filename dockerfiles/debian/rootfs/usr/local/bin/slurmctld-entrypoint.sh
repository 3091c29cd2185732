#!/bin/bash
# slurmctld image entrypoint: supervisord runs slurmctld (--systemd) and fakesystemd.
#   SLURMCTLD_OPTIONS  extra slurmctld options; the container's arguments follow them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

main() {
	parse_options SLURMCTLD_OPTIONS
	save_args slurmctld "${OPTS[@]}" "$@"
	# slurmctld wants its run directory owned by SlurmUser.
	mkdir -p /run/slurmctld
	chown "$SLURM_USER:$SLURM_USER" /run/slurmctld
	prepare_fakesystemd
	run_supervisord
}
main "$@"
