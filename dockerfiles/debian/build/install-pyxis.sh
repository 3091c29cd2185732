#!/bin/sh
# install-pyxis.sh: add enroot, pyxis and the NVIDIA container toolkit to a
# slurmd or login image. Run by the pyxis targets with these mounts:
#   /debs/pyxis    the pyxis package built by the pyxis-build stage
#   /debs/enroot   enroot.deb and enroot+caps.deb (sha256-checked downloads)
#   /keys/nvidia-container-toolkit.asc  the toolkit repository's key (sha256-checked)
#   /var/lib/apt/lists  the apt-lists stage's lists (read-only; apt.sh updates
#                  into /var/cache/apt/lists, the step's cache mount)
# and NVIDIA_REPO_URL, NVIDIA_TOOLKIT_VERSION in the environment.
set -eu

: "${NVIDIA_REPO_URL:?NVIDIA_REPO_URL is not set}"
: "${NVIDIA_TOOLKIT_VERSION:?NVIDIA_TOOLKIT_VERSION is not set}"
here=$(dirname "$0")

pyxis=$(find /debs/pyxis -name '*.deb' | head -n 1)
[ -n "$pyxis" ] || { echo "install-pyxis.sh: no pyxis package in /debs/pyxis" >&2; exit 1; }

"$here/apt.sh" --listed install ca-certificates bash-completion fuse-overlayfs pigz squashfuse \
	/debs/enroot/enroot.deb /debs/enroot/enroot+caps.deb "$pyxis"

# The toolkit's repository is used for this install only: the image keeps no
# source entry pointing at the build's mirror. Its lists are fetched here, with
# the distribution's again (the given ones are read-only: apt.sh updates into
# the step's cache mount, warm on a kept engine).
list=/etc/apt/sources.list.d/nvidia-container-toolkit.list
echo "deb [signed-by=/keys/nvidia-container-toolkit.asc] $NVIDIA_REPO_URL /" >"$list"
status=0
"$here/apt.sh" install \
	"nvidia-container-toolkit=$NVIDIA_TOOLKIT_VERSION" \
	"nvidia-container-toolkit-base=$NVIDIA_TOOLKIT_VERSION" || status=$?
rm -f "$list"
[ "$status" -eq 0 ] || exit "$status"

# enroot's extra hooks (shipped in its package) are enabled, as upstream does.
if [ -d /usr/share/enroot/hooks.d ]; then
	for hook in /usr/share/enroot/hooks.d/*.sh; do
		[ -e "$hook" ] || continue
		install -m 0755 "$hook" /etc/enroot/hooks.d/
	done
fi
if [ -f /usr/share/enroot/bash_completion ]; then
	ln -sf /usr/share/enroot/bash_completion /usr/share/bash-completion/completions/enroot
fi

# Every job user makes their own directory in these (enroot.conf.d/50-slinky-paths.conf,
# and slurm-operator's documented enroot.conf uses /run/enroot/$UID): writable
# by all, sticky so that no user can remove or rename another's.
install -d -m 1777 /usr/share/enroot/enroot-data /run/enroot
chmod 1777 /usr/share/enroot/enroot-data /run/enroot
install -d -m 0755 /etc/slurm/plugstack.conf.d
conf=/usr/share/pyxis/pyxis.conf
[ -f "$conf" ] || { echo "install-pyxis.sh: $conf missing from the pyxis package" >&2; exit 1; }
ln -sf "$conf" /etc/slurm/plugstack.conf.d/pyxis.conf
