#!/bin/bash
# sackd image entrypoint: supervisord runs sackd (--systemd, as SlurmUser) and fakesystemd.
#   SACKD_OPTIONS  extra sackd options; the container's arguments follow them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

main() {
	parse_options SACKD_OPTIONS
	container_args "$@"
	save_args sackd "${OPTS[@]}" "${CARGS[@]}"
	run_dir /run/slurm
	prepare_fakesystemd
	run_supervisord
}
main "$@"
