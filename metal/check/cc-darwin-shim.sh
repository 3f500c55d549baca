#!/bin/sh
# C compiler shim for `go tool cgo` with GOOS=darwin GOARCH=arm64 on Linux
# (metal-check.sh): cgo only needs the C compiler to read the preamble of
# bridge_darwin.go and report the types of the C names it uses. The host
# clang does that (LP64 like arm64 macOS: the same sizes for the int,
# size_t, uint32_t and pointer types the bridge's interface uses) once the
# Apple-only flags are dropped.
cc=${MARLIN_HOST_CC:-clang}
skip=
for a in "$@"; do
  shift
  if [ -n "$skip" ]; then skip=; continue; fi
  case "$a" in
    -arch|-framework) skip=1; continue ;;
    -fobjc-arc) continue ;;
  esac
  set -- "$@" "$a"
done
exec "$cc" -Wno-unused-command-line-argument "$@"
