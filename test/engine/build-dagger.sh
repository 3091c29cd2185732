#!/bin/bash
# Builds the Dagger CLI and engine from the Go module proxy, as the engine's own
# build does (toolchains/engine-dev/build/builder.go: build tags
# dfexcludepatterns,dfparents; -X engine.Version and engine.Tag), into OUT.
#
#   build-dagger.sh OUT [VERSION]   VERSION defaults to dagger.json's engineVersion
#
# github.com/dagger/dagger has `replace` directives for two nested modules
# (dagger.io/dagger => ./sdk/go, engine/distconsts => ./engine/distconsts) that
# its module zip leaves out, so `go install ...@VERSION` refuses: the module is
# downloaded (its hash checked by the go command against the checksum database),
# the nested modules are downloaded at the same version and put where the
# replaces point, and the commands are built inside it. Every module the proxy
# refuses is named, and then the script stops: nothing is built from anything
# but the proxy's modules. On success OUT holds engine, dagger, dialstdio,
# dnsname and init, and OUT/VERSION; on failure OUT/UNAVAILABLE says why.
set -euo pipefail

OUT=${1:?usage: build-dagger.sh OUT [VERSION]}
HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=${2:-$(sed -n 's/.*"engineVersion": *"\([^"]*\)".*/\1/p' "$HERE/../../dagger.json")}
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS=-mod=mod
mkdir -p "$OUT"
rm -f "$OUT/UNAVAILABLE"

# unavailable LINE...: record why (URLs cut to <proxy>: no host name in any log) and stop.
unavailable() {
	printf '%s\n' "$@" | sed -E 's#https?://[^/[:space:]'"'"'"]+#<proxy>#g' >"$OUT/UNAVAILABLE"
	sed 's/^/build-dagger.sh: /' "$OUT/UNAVAILABLE" >&2
	exit 1
}

if [[ $(cat "$OUT/VERSION" 2>/dev/null) == "$VERSION" ]] && [[ -x $OUT/engine && -x $OUT/dagger ]]; then
	echo "Dagger $VERSION already built in $OUT"
	exit 0
fi
command -v go >/dev/null || unavailable "no go command (Go 1.26 at /usr/local/go)"

# download MODULE@VERSION: prints its directory in the module cache, or the refusal.
download() {
	local json
	json=$(go mod download -json "$1" 2>&1 || true)
	if grep -q '"Error"' <<<"$json" || ! grep -q '"Dir"' <<<"$json"; then
		echo "REFUSED $1: $(sed -n 's/.*"Error": "\(.*\)".*/\1/p' <<<"$json" | head -n 1)"
		return 1
	fi
	sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$json"
}

work=$(mktemp -d /var/tmp/slinky-dagger-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
dir=$(download "github.com/dagger/dagger@$VERSION") || unavailable "the Go module proxy refuses github.com/dagger/dagger@$VERSION" "$dir"
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
refused=()
sdk=$(download "dagger.io/dagger@$VERSION") && cp -r "$sdk" "$work/src/sdk/go" || refused+=("$sdk")
consts=$(download "github.com/dagger/dagger/engine/distconsts@$VERSION") && cp -r "$consts" "$work/src/engine/distconsts" || refused+=("$consts")
chmod -R u+w "$work/src"
# Every dependency the build needs, each refusal named.
cd "$work/src"
while IFS= read -r line; do refused+=("$line"); done < <(
	go mod download -json all 2>/dev/null | awk '
		/"Path":/ { gsub(/[",]/, "", $2); path = $2 }
		/"Version":/ { gsub(/[",]/, "", $2); version = $2 }
		/"Error":/ { sub(/^[^:]*: "/, ""); sub(/",?$/, ""); print "REFUSED " path "@" version ": " $0 }'
)
if ((${#refused[@]} > 0)); then
	unavailable "the Go module proxy refuses modules Dagger $VERSION needs:" "${refused[@]}"
fi
started=$(date +%s)
go build -trimpath -tags dfexcludepatterns,dfparents \
	-ldflags "-s -w -X github.com/dagger/dagger/engine.Version=$VERSION -X github.com/dagger/dagger/engine.Tag=$VERSION" \
	-o "$OUT/" ./cmd/engine ./cmd/dagger ./cmd/dialstdio ./cmd/dnsname ./cmd/init
echo "$VERSION" >"$OUT/VERSION"
echo "built Dagger $VERSION (engine, dagger, dialstdio, dnsname, init) in $(($(date +%s) - started)) s into $OUT"
