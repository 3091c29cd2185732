#!/bin/sh
# collect-debs.sh FROM_DIR TO_DIR: copy every Debian binary package found
# directly in FROM_DIR to TO_DIR/<Package>.deb, whatever its file extension
# (.deb, or .ddeb as Ubuntu names debug packages). Debug-symbol packages
# (*-dbgsym) are left out: they never go into an image.
set -eu

[ $# -eq 2 ] || { echo "usage: collect-debs.sh FROM_DIR TO_DIR" >&2; exit 2; }
from=$1
to=$2
mkdir -p "$to"
n=0
for f in "$from"/*; do
	[ -f "$f" ] || continue
	pkg=$(dpkg-deb --field "$f" Package 2>/dev/null) || continue
	case "$pkg" in
	*-dbgsym) continue ;;
	esac
	cp "$f" "$to/$pkg.deb"
	echo "collect-debs.sh: $(basename "$f") -> $pkg.deb ($(dpkg-deb --field "$f" Version))"
	n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
	echo "collect-debs.sh: no packages in $from" >&2
	exit 1
fi
