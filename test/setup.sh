#!/usr/bin/env bash
# Installs what the test command needs on a fresh machine: Debian packages for
# the real BuildKit, registry and stand-in builds, then the npm dependencies.
set -euo pipefail

packages=(
  docker.io        # dockerd 20.10 + BuildKit for the image harness
  debootstrap      # the debian13 base image, made from the machine's apt mirror
  docker-registry  # a real registry (distribution 2.8) on loopback
  apache2-utils    # htpasswd for the registry's basic auth
  skopeo           # cross-checks what the registry holds
  shellcheck       # every shell script passes it
  gnupg            # signs the stand-in NVIDIA apt repository (gpg, gpgconf)
  rsync            # gitlab-ci-local copies the job tree with it
  openssl          # certificates and keys for the token-auth registry tests
  curl
  ca-certificates
  qemu-user-static # runs linux/arm64 binaries (registered by test/emulation.sh)
  binfmt-support   # update-binfmts, which registers qemu's interpreters
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cd "$(dirname "$0")/.."
# linux/arm64 under emulation: mounts binfmt_misc and registers qemu-aarch64 only if
# absent, recording what it changed so `test/emulation.sh restore` puts the host back.
# Where that is impossible (no binfmt_misc, not privileged) it says why, and the arm64
# tests are skipped by name.
test/emulation.sh enable
npm ci --no-audit --no-fund
