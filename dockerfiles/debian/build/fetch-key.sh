#!/bin/sh
# fetch-key.sh URL SHA256 FINGERPRINT OUT: download an ASCII-armored OpenPGP
# public key and pin it by the file's sha256, by the key's fingerprint, or by
# both. The file must hold exactly one primary key; with FINGERPRINT given it
# must be that key. With neither pin, the download is refused.
set -eu

[ $# -eq 4 ] || { echo "usage: fetch-key.sh URL SHA256 FINGERPRINT OUT" >&2; exit 2; }
url=$1
sha=$2
fpr=$(printf '%s' "$3" | tr -d ' ' | tr 'a-f' 'A-F')
out=$4
here=$(dirname "$0")

if [ -n "$sha" ]; then
	"$here/fetch.sh" "$url" "$sha" "$out"
elif [ -n "$fpr" ]; then
	mkdir -p "$(dirname "$out")"
	curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 30 -o "$out" "$url"
else
	echo "fetch-key.sh: refusing $url: neither a sha256 nor a fingerprint is pinned" >&2
	exit 1
fi

grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$out" || {
	echo "fetch-key.sh: $url is not an ASCII-armored OpenPGP public key" >&2
	exit 1
}
# Primary key fingerprints: the fpr record that follows each pub record.
primaries=$(gpg --show-keys --with-colons "$out" 2>/dev/null | awk -F: '$1 == "pub" { want = 1; next } $1 == "fpr" && want { print $10; want = 0 }')
count=$(printf '%s\n' "$primaries" | grep -c . || true)
if [ "$count" -ne 1 ]; then
	echo "fetch-key.sh: $url holds $count primary keys, expected 1" >&2
	exit 1
fi
if [ -n "$fpr" ] && [ "$primaries" != "$fpr" ]; then
	echo "fetch-key.sh: key fingerprint mismatch for $url: expected $fpr, got $primaries" >&2
	exit 1
fi
echo "fetch-key.sh: $url key $primaries OK"
