#!/usr/bin/env bash
# Install the pinned Dagger CLI after checking the release tarball's sha256.
#
# Inputs (environment):
#   DAGGER_VERSION      required, e.g. 0.21.8 (must match the module's engineVersion)
#   DAGGER_SHA256       sha256 of dagger_v<version>_linux_<arch>.tar.gz (a pin); when unset,
#                       the pinned entry in ci/dagger-checksums.txt is used; when neither
#                       exists, the release's published checksums.txt (what Dagger's own
#                       installer checks against) is fetched and the tarball verified
#                       against it; the sha256 trusted is printed so that it can be pinned.
#                       No pin and no usable checksums.txt: the install is refused.
#   DAGGER_BIN_DIR      where to put the binary (default /usr/local/bin)
#   DAGGER_RELEASES_URL base of the release downloads (default Dagger's official
#                       https://dl.dagger.io/dagger/releases): <base>/<version>/<tarball>
#                       and <base>/<version>/checksums.txt; a mirror, or a test's stand-in
#   DAGGER_DOWNLOAD_URL full tarball URL (default: from DAGGER_RELEASES_URL)
#   DAGGER_CHECKSUMS_URL   the release's checksums.txt (default: from DAGGER_RELEASES_URL)
#   DAGGER_CHECKSUMS_FILE  pinned checksums (default: dagger-checksums.txt beside this script)
#   DAGGER_ARCH         override the architecture (amd64, arm64); default from uname -m
set -euo pipefail

die() {
  printf 'install-dagger: %s\n' "$*" >&2
  exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="${DAGGER_VERSION:-}"
[[ -n "$version" ]] || die "DAGGER_VERSION is not set (expected the pinned Dagger version, e.g. 0.21.8)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "DAGGER_VERSION '$version' is not a release version X.Y.Z"

os="$(uname -s | tr '[:upper:]' '[:lower:]')"
[[ "$os" == "linux" ]] || die "unsupported OS '$os' (the CI job runs on Linux)"

arch="${DAGGER_ARCH:-}"
if [[ -z "$arch" ]]; then
  case "$(uname -m)" in
    x86_64 | amd64) arch="amd64" ;;
    aarch64 | arm64) arch="arm64" ;;
    *) die "unsupported machine architecture '$(uname -m)'" ;;
  esac
fi
[[ "$arch" == "amd64" || "$arch" == "arm64" ]] || die "unsupported DAGGER_ARCH '$arch' (amd64 or arm64)"

file="dagger_v${version}_${os}_${arch}.tar.gz"
releases="${DAGGER_RELEASES_URL:-https://dl.dagger.io/dagger/releases}"
releases="${releases%/}"
url="${DAGGER_DOWNLOAD_URL:-${releases}/${version}/${file}}"
checksums_url="${DAGGER_CHECKSUMS_URL:-${releases}/${version}/checksums.txt}"
bin_dir="${DAGGER_BIN_DIR:-/usr/local/bin}"
checksums_file="${DAGGER_CHECKSUMS_FILE:-${here}/dagger-checksums.txt}"

command -v curl >/dev/null 2>&1 || die "curl is required (in the docker image: apk add --no-cache bash curl)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is required"

work="$(mktemp -d "${TMPDIR:-/tmp}/install-dagger.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# Expected checksum: a pin first (the variable, then the pinned list, both in
# checksums.txt's format), else the release's own checksums.txt.
expected="${DAGGER_SHA256:-}"
source_of_expected="DAGGER_SHA256"
pinned=true
if [[ -z "$expected" && -r "$checksums_file" ]]; then
  expected="$(awk -v f="$file" '$2 == f { print $1; exit }' "$checksums_file")"
  source_of_expected="$checksums_file"
fi
if [[ -z "$expected" ]]; then
  pinned=false
  source_of_expected="$checksums_url"
  printf 'install-dagger: no sha256 pinned for %s: checking it against the published %s\n' "$file" "$checksums_url"
  curl --fail --silent --show-error --location --retry 3 --max-time 60 \
    --output "${work}/checksums.txt" "$checksums_url" ||
    die "no sha256 pinned for ${file} and the release's checksums.txt could not be fetched (${checksums_url}): set the CI/CD variable DAGGER_SHA256 (or pin it in ci/dagger-checksums.txt). Refusing to install an unverified Dagger CLI."
  expected="$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1; exit }' "${work}/checksums.txt")"
  [[ -n "$expected" ]] ||
    die "no sha256 pinned for ${file}, and ${checksums_url} lists no line for ${file}: set the CI/CD variable DAGGER_SHA256 (or pin it in ci/dagger-checksums.txt). Refusing to install an unverified Dagger CLI."
fi
expected="$(printf '%s' "$expected" | tr '[:upper:]' '[:lower:]')"
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] || die "the sha256 from ${source_of_expected} is not 64 hex characters"

printf 'install-dagger: downloading %s\n' "$url"
curl --fail --silent --show-error --location --retry 3 --max-time 300 \
  --output "${work}/${file}" "$url" || die "download failed: ${url}"

actual="$(sha256sum "${work}/${file}" | awk '{ print $1 }')"
if [[ "$actual" != "$expected" ]]; then
  die "sha256 mismatch for ${file}: expected ${expected} (from ${source_of_expected}), got ${actual}. Refusing to install."
fi
printf 'install-dagger: sha256 ok for %s (%s)\n' "$file" "$actual"
if [[ "$pinned" == false ]]; then
  printf 'install-dagger: trusted sha256 %s for %s from %s (same server as the tarball).\n' "$actual" "$file" "$checksums_url"
  printf 'install-dagger: pin it: set the CI/CD variable DAGGER_SHA256=%s, or add this line to ci/dagger-checksums.txt:\n' "$actual"
  printf '%s  %s\n' "$actual" "$file"
fi

mkdir -p "${work}/x"
tar -xzf "${work}/${file}" -C "${work}/x" dagger || die "${file} has no 'dagger' binary at its top level"
mkdir -p "$bin_dir"
install -m 0755 "${work}/x/dagger" "${bin_dir}/dagger"

# The installed CLI must report the pinned version (CLI and engine versions must match).
reported="$("${bin_dir}/dagger" version)" || die "'${bin_dir}/dagger version' failed"
[[ "$reported" == *"v${version}"* ]] || die "installed CLI reports '${reported}', expected v${version}"
printf 'install-dagger: installed %s\n' "$reported"
