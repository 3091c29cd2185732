#!/bin/sh
# unpack.sh TARBALL DEST: extract a source tarball whose single top-level
# directory has any name (slurm-25.11.2/, slurm-slurm-24-11-5-1/, pyxis-0.24.0/)
# and move that directory's content to DEST.
set -eu

[ $# -eq 2 ] || { echo "usage: unpack.sh TARBALL DEST" >&2; exit 2; }
tarball=$1
dest=$2

work=$(mktemp -d)
tar -xf "$tarball" -C "$work" --no-same-owner
count=$(find "$work" -mindepth 1 -maxdepth 1 | wc -l)
top=$(find "$work" -mindepth 1 -maxdepth 1)
if [ "$count" -ne 1 ] || [ ! -d "$top" ]; then
	echo "unpack.sh: $tarball must hold exactly one top-level directory, found $count entries" >&2
	exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$top" "$dest"
rmdir "$work"
echo "unpack.sh: $(basename "$top")/ -> $dest"
