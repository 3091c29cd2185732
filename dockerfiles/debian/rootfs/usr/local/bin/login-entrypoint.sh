#!/bin/bash
# login image entrypoint: supervisord runs sackd (--systemd, as SlurmUser),
# fakesystemd, sshd and sssd.
#   SACKD_OPTIONS  extra sackd options; the container's arguments follow them.
#   SSHD_OPTIONS   extra sshd options.
#   SSSD_OPTIONS   extra sssd options.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/slinky/entrypoint-lib.sh
. /usr/local/lib/slinky/entrypoint-lib.sh

main() {
	parse_options SACKD_OPTIONS
	container_args "$@"
	save_args sackd "${OPTS[@]}" "${CARGS[@]}"
	parse_options SSHD_OPTIONS
	save_args sshd "${OPTS[@]}"
	parse_options SSSD_OPTIONS
	save_args sssd "${OPTS[@]}"
	run_dir /run/slurm
	prepare_fakesystemd
	prepare_sshd
	prepare_sssd
	run_supervisord
}
main "$@"
