#!/bin/sh
# gpu-libraries.sh NAME...: make each library NAME (librocm_smi64.so,
# libze_loader.so) loadable by that name. slurmd dlopens the GPU vendors'
# libraries by their unversioned names (interfaces/gpu.c in Slurm's sources), which
# Debian's runtime packages do not ship (only their -dev packages, with
# headers): each NAME becomes a link to the versioned library (NAME.N) the
# runtime package installed, in its directory. No NAME: nothing to do.
set -eu

for name in "$@"; do
	case "$name" in
	lib*.so) ;;
	*) echo "gpu-libraries.sh: '$name' is not a library name like libfoo.so" >&2; exit 2 ;;
	esac
	target=$(ldconfig -p | awk -v prefix="$name." '$1 ~ /^lib/ && index($1, prefix) == 1 { print $NF; exit }')
	[ -n "$target" ] || { echo "gpu-libraries.sh: no $name.N in the linker cache: install the package that holds it" >&2; exit 1; }
	dir=$(dirname "$target")
	[ -e "$dir/$name" ] || ln -s "$(basename "$target")" "$dir/$name"
	echo "gpu-libraries.sh: $dir/$name -> $(basename "$target")"
done
[ $# -eq 0 ] || ldconfig
