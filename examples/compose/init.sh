#!/bin/bash
# init.sh: the compose cluster's one-shot `init` service (run in the login
# image, as root, before any daemon starts). Makes what must never be committed
# the first time it runs, keeps it afterwards, and installs the configuration
# from ./etc into the daemons' volumes with the owners and modes Slurm wants:
#
#   /etc/slurm      slurm.conf, cgroup.conf; slurm.key and jwt_hs256.key (made
#                   once, 0600 slurm): slurmctld, slurmd, login
#   /etc/slurmdbd   slurmdbd.conf (0600 slurm, with the database password), the keys
#   /etc/slurmrestd slurm.conf, slurm.key (0640 root:65534): slurmrestd runs as nobody
#   /secrets        db-password (made once): MariaDB reads it
#   /ssh-keys       the login node's ssh host keys (made once)
#   /root-ssh       root's authorized_keys on the login node: SSH_AUTHORIZED_KEYS
set -euo pipefail

SLURM_USER=slurm
NOBODY_GID=65534

say() { echo "init.sh: $*"; }

# once PATH COMMAND...: runs COMMAND (which makes PATH) unless PATH exists.
once() {
	local path=$1
	shift
	if [[ -s $path ]]; then
		say "keeping $path"
	else
		"$@"
		say "made $path"
	fi
}

random_bytes() { head -c "$2" /dev/urandom >"$1"; }

install -d -m 0755 /etc/slurm /etc/slurmdbd /etc/slurmrestd /secrets /ssh-keys
install -d -m 0700 /root-ssh

once /etc/slurm/slurm.key random_bytes /etc/slurm/slurm.key 1024
once /etc/slurm/jwt_hs256.key random_bytes /etc/slurm/jwt_hs256.key 64
once /secrets/db-password sh -c 'head -c 24 /dev/urandom | base64 | tr -d "/+=\n" >/secrets/db-password'
for type in ed25519 rsa ecdsa; do
	once "/ssh-keys/ssh_host_${type}_key" ssh-keygen -q -t "$type" -N "" -C "compose-login" -f "/ssh-keys/ssh_host_${type}_key"
done

chown "$SLURM_USER:$SLURM_USER" /etc/slurm/slurm.key /etc/slurm/jwt_hs256.key
chmod 0600 /etc/slurm/slurm.key /etc/slurm/jwt_hs256.key
# MariaDB's own user reads the password file: world-readable, in a volume only it mounts.
chmod 0644 /secrets/db-password
chmod 0600 /ssh-keys/ssh_host_*_key

install -m 0644 /config/slurm.conf /config/cgroup.conf /etc/slurm/

install -m 0600 -o "$SLURM_USER" -g "$SLURM_USER" /etc/slurm/slurm.key /etc/slurm/jwt_hs256.key /etc/slurmdbd/
{
	cat /config/slurmdbd.conf
	printf 'StoragePass=%s\n' "$(cat /secrets/db-password)"
} >/etc/slurmdbd/slurmdbd.conf.new
chown "$SLURM_USER:$SLURM_USER" /etc/slurmdbd/slurmdbd.conf.new
chmod 0600 /etc/slurmdbd/slurmdbd.conf.new
mv /etc/slurmdbd/slurmdbd.conf.new /etc/slurmdbd/slurmdbd.conf

install -m 0644 /config/slurm.conf /etc/slurmrestd/slurm.conf
install -m 0640 -o root -g "$NOBODY_GID" /etc/slurm/slurm.key /etc/slurmrestd/slurm.key

if [[ -n ${SSH_AUTHORIZED_KEYS:-} ]]; then
	printf '%s\n' "$SSH_AUTHORIZED_KEYS" >/root-ssh/authorized_keys
	chmod 0600 /root-ssh/authorized_keys
	say "root's authorized_keys on the login node: from SSH_AUTHORIZED_KEYS"
else
	rm -f /root-ssh/authorized_keys
	say "SSH_AUTHORIZED_KEYS is empty: no ssh login (docker compose exec login … still works)"
fi
say "done"
