#!/bin/sh
# check-version.sh DEB VERSION: fail unless the package's upstream version
# (its Version without the Debian revision and epoch) is VERSION.
set -eu

[ $# -eq 2 ] || { echo "usage: check-version.sh DEB VERSION" >&2; exit 2; }
got=$(dpkg-deb --field "$1" Version)
upstream=${got#*:}
upstream=${upstream%-*}
if [ "$upstream" != "$2" ]; then
	echo "check-version.sh: $(basename "$1") has version $got, expected $2" >&2
	exit 1
fi
