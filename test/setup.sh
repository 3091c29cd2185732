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
  iptables         # the engine tests: one NAT rule for the Dagger engine's namespace
  iproute2         # the engine tests: its network namespace and veth pair; the compose test's namespace
  docker-compose   # the compose test: Debian's docker-compose 1.29 brings up examples/compose
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# cosign (signing tests): bookworm has no package; Debian trixie's cosign 2.5 is on the same
# mirror. apt downloads it through a private, throw-away apt state (its own sources list and
# lists directory; the host's apt configuration is not touched) and checks it against the signed
# trixie index (debian-archive-keyring); dpkg installs it (it needs only libc6 >= 2.34).
install_trixie_cosign() {
  local uri tmp
  # The mirror the host already uses, read from its own apt configuration at run time.
  uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [ -z "$uri" ]; then
    uri="$(awk '$1 == "deb" && $2 ~ /^https?:/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  fi
  [ -n "$uri" ] || { echo "setup: no Debian mirror found in /etc/apt: cannot fetch cosign" >&2; return 1; }
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/cache/archives/partial"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" >"$tmp/parts/trixie.sources"
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$tmp/parts"
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=$tmp/parts")
  apt-get -qq "${opts[@]}" update
  (cd "$tmp" && apt-get -qq "${opts[@]}" download cosign)
  dpkg -i "$tmp"/cosign_*.deb >/dev/null
  rm -rf "$tmp"
}
command -v cosign >/dev/null 2>&1 || install_trixie_cosign

cd "$(dirname "$0")/.."
# linux/arm64 under emulation: mounts binfmt_misc and registers qemu-aarch64 only if
# absent, recording what it changed so `test/emulation.sh restore` puts the host back.
# Where that is impossible (no binfmt_misc, not privileged) it says why, and the arm64
# tests are skipped by name.
test/emulation.sh enable
npm ci --no-audit --no-fund

# The Dagger CLI and engine for the engine tests (test/engine/), built from the Go module
# proxy at dagger.json's engineVersion. Where the proxy refuses that version or a module it
# needs, build-dagger.sh records each refusal and the engine tests are skipped under a name
# that says so; never fatal here.
test/engine/build-dagger.sh "${SLINKY_DAGGER_DIR:-/var/tmp/slinky-dagger}/bin" ||
  echo "setup: no Dagger engine here; the engine tests will be skipped (why: ${SLINKY_DAGGER_DIR:-/var/tmp/slinky-dagger}/bin/UNAVAILABLE)" >&2
