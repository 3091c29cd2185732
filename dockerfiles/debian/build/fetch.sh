#!/bin/sh
# fetch.sh URL SHA256 OUT: download URL to OUT and check its sha256.
# An empty SHA256 means the checksum is unknown: the download is refused.
set -eu

[ $# -eq 3 ] || { echo "usage: fetch.sh URL SHA256 OUT" >&2; exit 2; }
url=$1
sha=$2
out=$3

if [ -z "$url" ]; then
	echo "fetch.sh: no URL given for $out" >&2
	exit 1
fi
if ! printf '%s' "$sha" | grep -Eq '^[0-9a-f]{64}$'; then
	echo "fetch.sh: refusing $url: no valid sha256 pinned (got '$sha')" >&2
	exit 1
fi

mkdir -p "$(dirname "$out")"
curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 30 -o "$out.part" "$url"
got=$(sha256sum "$out.part" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then
	rm -f "$out.part"
	echo "fetch.sh: sha256 mismatch for $url: expected $sha, got $got" >&2
	exit 1
fi
mv "$out.part" "$out"
echo "fetch.sh: $url sha256 $got OK"
