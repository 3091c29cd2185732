#!/bin/sh
# Print the Debian mirror this machine's apt uses (first non-security URI), read at
# run time from apt's own configuration so no mirror host is written into the repo.
# SLINKY_APT_MIRROR overrides it.
set -eu

if [ -n "${SLINKY_APT_MIRROR:-}" ]; then
  echo "${SLINKY_APT_MIRROR%/}"
  exit 0
fi

{
  # deb822 files: "URIs: <uri> [<uri>...]"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] && sed -n 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n'
  done
  # one-line format: "deb [options] <uri> <suite> <components>"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] && sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]\{1,\}\).*/\2/p' "$f"
  done
} | grep -E '^(https?|file)://' | grep -v -- '-security' | grep -v '/security' | head -n 1 | sed 's#/*$##' | grep . || {
  echo "no Debian mirror found in /etc/apt (set SLINKY_APT_MIRROR)" >&2
  exit 1
}
