#!/bin/bash
# STAND-IN entrypoint (see the Dockerfile): the database and user from the
# official image's variables, made by an init file at every start, then mariadbd.
set -euo pipefail
: "${MARIADB_DATABASE:?}" "${MARIADB_USER:?}" "${MARIADB_PASSWORD_FILE:?}"
[[ ${MARIADB_RANDOM_ROOT_PASSWORD:-} == 1 ]] || { echo "entrypoint.sh: this stand-in supports MARIADB_RANDOM_ROOT_PASSWORD=1 only" >&2; exit 1; }
password=$(cat "$MARIADB_PASSWORD_FILE")
[[ $password != *"'"* && $password != *\\* ]] || { echo "entrypoint.sh: quotes or backslashes in the password" >&2; exit 1; }
if [[ ! -d /var/lib/mysql/mysql ]]; then
	mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
init=/run/mysqld/init.sql
install -m 0600 -o mysql -g mysql /dev/null "$init"
cat >"$init" <<SQL
CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;
CREATE USER IF NOT EXISTS '$MARIADB_USER'@'%' IDENTIFIED BY '$password';
ALTER USER '$MARIADB_USER'@'%' IDENTIFIED BY '$password';
GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';
SQL
exec mariadbd --user=mysql --bind-address=0.0.0.0 --skip-name-resolve --init-file="$init" "$@"
