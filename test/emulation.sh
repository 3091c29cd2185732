#!/bin/sh
# arm64 emulation for the tests and benchmarks: binfmt_misc plus Debian's
# qemu-user-static interpreter for aarch64 (registered "fix binary", so it also
# works inside containers and chroots, where the interpreter's path does not exist).
#
#   emulation.sh enable    mount binfmt_misc if absent and register qemu-aarch64 if
#                          it is not; records ONLY what it changed in $STATE. Exits 0
#                          either way (a machine without emulation still runs the
#                          other tests); says on stderr what is unavailable and why.
#   emulation.sh status    exit 0 and print "ready" if linux/arm64 binaries run here,
#                          else exit 1 and print why not (tests skip arm64 parts on it).
#   emulation.sh restore   undo exactly what `enable` recorded in $STATE: unregister
#                          the interpreters it registered, unmount binfmt_misc if it
#                          mounted it (and nothing else is registered), then remove $STATE.
#                          Interpreters and mounts that were there before are left alone.
#
# Needs root, qemu-user-static and binfmt-support (test/setup.sh installs them).
# SLINKY_EMULATION_STATE (default /var/tmp/slinky-emulation.state) is the record.
set -eu

BINFMT=/proc/sys/fs/binfmt_misc
STATE=${SLINKY_EMULATION_STATE:-/var/tmp/slinky-emulation.state}
ENTRY=qemu-aarch64

say() { echo "emulation: $*" >&2; }

record() {
  grep -qxF "$1" "$STATE" 2>/dev/null || echo "$1" >>"$STATE"
}

# A 160-byte static linux/arm64 program that prints "aarch64" (write(1, msg, 8);
# exit(0)): ELF header, one PT_LOAD segment at 0x400000, then 8 instructions:
#   mov x0,#1; adr x1,msg; mov x2,#8; mov x8,#64; svc #0; mov x0,#0; mov x8,#93; svc #0
# Running it is the only honest answer to "do arm64 binaries run here".
write_probe() {
  printf '\177\105\114\106\002\001\001\000\000\000\000\000\000\000\000\000\002\000\267\000\001\000\000\000'
  printf '\170\000\100\000\000\000\000\000\100\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000'
  printf '\000\000\000\000\100\000\070\000\001\000\000\000\000\000\000\000\001\000\000\000\005\000\000\000'
  printf '\000\000\000\000\000\000\000\000\000\000\100\000\000\000\000\000\000\000\100\000\000\000\000\000'
  printf '\240\000\000\000\000\000\000\000\240\000\000\000\000\000\000\000\000\020\000\000\000\000\000\000'
  printf '\040\000\200\322\341\000\000\020\002\001\200\322\010\010\200\322\001\000\000\324\000\000\200\322'
  printf '\250\013\200\322\001\000\000\324\141\141\162\143\150\066\064\012'
}

# "ready", or the reason arm64 binaries cannot run here (on stdout).
why_not() {
  if [ ! -e "$BINFMT/status" ]; then
    echo "binfmt_misc is not mounted at $BINFMT"
  elif [ "$(cat "$BINFMT/status")" != enabled ]; then
    echo "binfmt_misc is disabled ($BINFMT/status)"
  elif [ ! -e "$BINFMT/$ENTRY" ]; then
    echo "no $ENTRY interpreter is registered in $BINFMT"
  elif ! head -n 1 "$BINFMT/$ENTRY" | grep -qx enabled; then
    echo "the $ENTRY interpreter is registered but disabled"
  elif ! grep -q '^flags:.*F' "$BINFMT/$ENTRY"; then
    # Without F the kernel looks the interpreter up inside each container: arm64
    # RUN steps would fail there with "no such file or directory".
    echo "the $ENTRY interpreter is registered without the F (fix binary) flag"
  else
    probe=$(mktemp)
    write_probe >"$probe"
    chmod +x "$probe"
    out=$("$probe" 2>&1) || true
    rm -f "$probe"
    if [ "$out" = aarch64 ]; then
      echo ready
    else
      echo "an arm64 test program did not run under $ENTRY: $out"
    fi
  fi
}

case "${1:-}" in
enable)
  if [ ! -e "$BINFMT/status" ]; then
    if ! grep -qw binfmt_misc /proc/filesystems; then
      say "arm64 emulation unavailable: this kernel has no binfmt_misc"
      exit 0
    fi
    if ! err=$(mount -t binfmt_misc binfmt_misc "$BINFMT" 2>&1); then
      say "arm64 emulation unavailable: cannot mount binfmt_misc at $BINFMT ($err)"
      exit 0
    fi
    record "mounted $BINFMT"
    say "mounted binfmt_misc at $BINFMT (emulation.sh restore unmounts it)"
  fi
  if [ ! -e "$BINFMT/$ENTRY" ] || ! head -n 1 "$BINFMT/$ENTRY" | grep -qx enabled; then
    if ! command -v update-binfmts >/dev/null || [ ! -e "/usr/share/binfmts/$ENTRY" ]; then
      say "arm64 emulation unavailable: install qemu-user-static and binfmt-support (test/setup.sh does)"
      exit 0
    fi
    # The package's own definition: /usr/libexec/qemu-binfmt/aarch64-binfmt-P, fix_binary yes.
    if ! err=$(update-binfmts --enable "$ENTRY" 2>&1); then
      say "arm64 emulation unavailable: update-binfmts --enable $ENTRY failed ($err)"
      exit 0
    fi
    record "registered $ENTRY"
    say "registered $ENTRY (emulation.sh restore unregisters it)"
  fi
  reason=$(why_not)
  if [ "$reason" = ready ]; then
    say "linux/arm64 ready ($ENTRY)"
  else
    say "arm64 emulation unavailable: $reason"
  fi
  ;;
status)
  reason=$(why_not)
  echo "$reason"
  [ "$reason" = ready ]
  ;;
restore)
  if [ ! -f "$STATE" ]; then
    say "nothing to restore ($STATE absent: enable changed nothing)"
    exit 0
  fi
  if grep -qxF "registered $ENTRY" "$STATE" && [ -e "$BINFMT/$ENTRY" ]; then
    update-binfmts --disable "$ENTRY" >/dev/null 2>&1 || echo -1 >"$BINFMT/$ENTRY"
    say "unregistered $ENTRY"
  fi
  if grep -qxF "mounted $BINFMT" "$STATE" && [ -e "$BINFMT/status" ]; then
    others=$(find "$BINFMT" -mindepth 1 -maxdepth 1 ! -name status ! -name register -printf '%f ')
    if [ -n "$others" ]; then
      say "binfmt_misc left mounted: registered since by someone else: $others"
    else
      umount "$BINFMT"
      say "unmounted binfmt_misc"
    fi
  fi
  rm -f "$STATE"
  ;;
*)
  echo "usage: emulation.sh enable | status | restore" >&2
  exit 2
  ;;
esac
