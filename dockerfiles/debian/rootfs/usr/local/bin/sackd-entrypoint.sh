#!/bin/bash
# sackd image entrypoint: supervisord runs sackd (--systemd, as SlurmUser) and fakesystemd.
#   SACKD_OPTIONS  extra sackd options; the container's arguments follow them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

main() {
	parse_options SACKD_OPTIONS
	save_args sackd "${OPTS[@]}" "$@"
	mkdir -p /run/slurm
	chown "$SLURM_USER:$SLURM_USER" /run/slurm
	prepare_fakesystemd
	run_supervisord
}
main "$@"
