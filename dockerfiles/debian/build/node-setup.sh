#!/bin/sh
# node-setup.sh ROLE: configuration of the images that run sshd and sssd
# (ROLE slurmd or login), after their packages are installed.
set -eu

[ $# -eq 1 ] || { echo "usage: node-setup.sh slurmd|login" >&2; exit 2; }
role=$1

# Users and groups from sssd, home directories made at first login.
mkdir -p /etc/authselect
authselect select sssd with-mkhomedir --force

if [ "$role" = slurmd ]; then
	# nss_slurm answers first for users and groups of the jobs on this node.
	# authselect may have made nsswitch.conf a link into /etc/authselect.
	nss=$(readlink -f /etc/nsswitch.conf)
	sed -i -E 's/^(passwd|group):([[:space:]]+)/\1:\2slurm /' "$nss"
	for db in passwd group; do
		grep -Eq "^$db:[[:space:]]+slurm " "$nss" || { echo "node-setup.sh: $db is not served by slurm first in $nss" >&2; exit 1; }
	done
	mkdir -p /var/spool/slurmd
fi

# Host keys are made at each start (entrypoint), never baked into the image.
rm -f /etc/ssh/ssh_host_*
