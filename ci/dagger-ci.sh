#!/usr/bin/env bash
# The GitLab job: install the pinned Dagger CLI (checksum-verified), then make ONE call
# into the module's `ci` function with the job's values. The registry password is passed
# only by name (env:CI_REGISTRY_PASSWORD), so it never appears on a command line or in a log.
set -euo pipefail

die() {
  printf 'dagger-ci: %s\n' "$*" >&2
  exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Branch pipelines only: GitLab leaves CI_COMMIT_BRANCH unset in merge-request and tag pipelines.
for name in CI_COMMIT_BRANCH CI_COMMIT_SHA CI_DEFAULT_BRANCH CI_PIPELINE_SOURCE \
  CI_REGISTRY_IMAGE CI_REGISTRY_USER CI_REGISTRY_PASSWORD; do
  [[ -n "${!name:-}" ]] || die "${name} is not set (this job runs in GitLab branch pipelines only)"
done

# Signing (SIGNING: auto, keyless, key or off). Secrets are passed by name or path only:
# the OIDC token (id_tokens) as env:SIGSTORE_ID_TOKEN, the key (a File variable) as
# file:$COSIGN_PRIVATE_KEY, its password as env:COSIGN_PASSWORD.
# auto: key-based when a key is set; keyless on gitlab.com (an issuer the public
# Fulcio trusts) or with a Fulcio of the site's own; otherwise stop before building,
# since a self-managed GitLab's token would be refused only after the whole build.
signing="${SIGNING:-auto}"
if [[ "$signing" == "auto" ]]; then
  if [[ -n "${COSIGN_PRIVATE_KEY:-}" ]]; then
    signing=key
  elif [[ -n "${SIGNING_FULCIO_URL:-}" || "${CI_SERVER_HOST:-}" == "gitlab.com" ]]; then
    signing=keyless
  else
    die "SIGNING=auto: no signing key is set and this GitLab (${CI_SERVER_HOST:-unknown host}) is not an issuer the public Sigstore trusts. Set COSIGN_PRIVATE_KEY (a File variable) and COSIGN_PASSWORD (masked) to sign with a key, SIGNING_FULCIO_URL (and SIGNING_REKOR_URL) for your own Sigstore, or SIGNING=off to publish unsigned images; valid values of SIGNING: auto, keyless, key, off"
  fi
  printf 'dagger-ci: SIGNING=auto: signing %s\n' "$signing" >&2
fi
sign_args=(--signing "$signing")
case "$signing" in
  keyless)
    [[ -n "${SIGSTORE_ID_TOKEN:-}" ]] ||
      die "SIGNING=keyless needs the job's OIDC token SIGSTORE_ID_TOKEN (id_tokens with aud sigstore in .gitlab-ci.yml); or set SIGNING to key or off"
    identity="${SIGNING_CERTIFICATE_IDENTITY:-${CI_PROJECT_URL:-}//${CI_CONFIG_PATH:-.gitlab-ci.yml}@refs/heads/${CI_COMMIT_BRANCH}}"
    sign_args+=(--oidc-token env:SIGSTORE_ID_TOKEN
      --certificate-identity "$identity"
      --certificate-oidc-issuer "${SIGNING_CERTIFICATE_OIDC_ISSUER:-${CI_SERVER_URL:-https://gitlab.com}}")
    ;;
  key)
    [[ -n "${COSIGN_PRIVATE_KEY:-}" && -f "${COSIGN_PRIVATE_KEY:-}" ]] ||
      die "SIGNING=key needs COSIGN_PRIVATE_KEY: a CI/CD variable of type File holding cosign.key"
    [[ -n "${COSIGN_PASSWORD:-}" ]] || die "SIGNING=key needs COSIGN_PASSWORD: a masked CI/CD variable with the key's password"
    sign_args+=(--signing-key "file:${COSIGN_PRIVATE_KEY}" --signing-password env:COSIGN_PASSWORD)
    ;;
  off) ;;
  *) die "SIGNING=${signing}: valid values are auto, keyless, key, off" ;;
esac
if [[ "$signing" != "off" ]]; then
  [[ -z "${SIGNING_FULCIO_URL:-}" ]] || sign_args+=(--fulcio-url "$SIGNING_FULCIO_URL")
  [[ -z "${SIGNING_REKOR_URL:-}" ]] || sign_args+=(--rekor-url "$SIGNING_REKOR_URL")
fi

"${here}/install-dagger.sh"

dagger_bin="${DAGGER_BIN_DIR:-/usr/local/bin}/dagger"
export DAGGER_NO_NAG="${DAGGER_NO_NAG:-1}"

# `ci` returns its report even when an image failed, so the job can keep it as an
# artifact; report/status then says whether the run passed.
"$dagger_bin" call ci \
  --branch "$CI_COMMIT_BRANCH" \
  --commit-sha "$CI_COMMIT_SHA" \
  --default-branch "$CI_DEFAULT_BRANCH" \
  --pipeline-source "$CI_PIPELINE_SOURCE" \
  --registry "$CI_REGISTRY_IMAGE" \
  --username "$CI_REGISTRY_USER" \
  --password env:CI_REGISTRY_PASSWORD \
  --slurm-version "${SLURM_VERSION:-25.11}" \
  --flavor "${LINUX_FLAVOR:-ubuntu24.04}" \
  --group "${BUILD_GROUP:-all}" \
  ${PLATFORMS:+--platforms "$PLATFORMS"} \
  --commit-timestamp "${CI_COMMIT_TIMESTAMP:-}" \
  --build-cache "${BUILD_CACHE:-on}" \
  --cache-max-age-days "${BUILD_CACHE_MAX_AGE_DAYS:-7}" \
  --pipeline-url "${CI_PIPELINE_URL:-}" \
  --job-url "${CI_JOB_URL:-}" \
  "${sign_args[@]}" \
  export --path report

status="$(cat report/status 2>/dev/null || echo "missing")"
if [[ "$status" != "passed" ]]; then
  cat report/report.md 2>/dev/null || true
  die "the run did not pass (report/status: ${status}); no production tag moved unless the report says so"
fi
cat report/report.md
