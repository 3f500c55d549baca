#!/usr/bin/env bash
# metal-check: everything about the Metal backend that can be checked on
# Linux without a Mac (make metal-check). Needs clang (apt-get install clang).
#  1. gofmt and go vet of ./metal/... (Linux, cgo: emulator and host code);
#  2. GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 go vet: the darwin build
#     without cgo (Open reports ErrUnavailable);
#  3. the darwin cgo build: `go tool cgo` translates bridge_darwin.go for
#     darwin/arm64 (host clang through cc-darwin-shim.sh reads the C
#     preamble: every C name the Go code uses must exist in
#     bridge_darwin.h), then go vet type-checks the package as the darwin
#     cgo build sees it (generated files put in place with -overlay);
#  4. clang syntax/type check of bridge_darwin.m against stub Foundation
#     and Metal headers, and clang++ check of the assembled MSL library
#     against a stub Metal standard library (address spaces enforced);
#  5. go test ./metal/... (kernels under the emulator vs quant/ and kernels/).
# What it cannot check: Apple's MSL compiler and SDK headers, linking
# against Metal.framework, running on a GPU. See metal/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
CLANG=${CLANG:-$(command -v clang || command -v clang-14 || command -v clang-15 || command -v clang-16 || true)}
if [ -z "$CLANG" ]; then
  echo "metal-check: clang not found (apt-get install clang)" >&2
  exit 1
fi
export MARLIN_REQUIRE_CLANG=1
PATH="$(dirname "$CLANG"):$PATH"

echo "== gofmt, go vet (linux/$($GO env GOARCH), cgo)"
out=$(gofmt -l metal)
if [ -n "$out" ]; then echo "gofmt needed: $out"; exit 1; fi
$GO vet ./metal/...

echo "== go vet (darwin/arm64, CGO_ENABLED=0)"
GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $GO vet ./metal/...

echo "== cgo translation + go vet (darwin/arm64, cgo bridge)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd metal && MARLIN_HOST_CC="$CLANG" GOOS=darwin GOARCH=arm64 CGO_ENABLED=1 \
  CC="$PWD/check/cc-darwin-shim.sh" $GO tool cgo -objdir "$tmp" \
  -importpath github.com/marlin-llm/marlin/metal bridge_darwin.go)
# With CGO_ENABLED=0 (vet cannot build runtime/cgo for darwin here) the
# generated files lose their cgo build tag and runtime/cgo's Incomplete.
sed '/^\/\/go:build darwin && cgo$/d' "$tmp/bridge_darwin.cgo1.go" > "$tmp/zz_bridge_cgo1.go"
sed -e 's|^import _cgopackage "runtime/cgo"$||' -e '/^type _ _cgopackage.Incomplete$/d' \
  -e 's|_cgopackage.Incomplete|struct{ _ [0]byte }|' "$tmp/_cgo_gotypes.go" > "$tmp/zz_gotypes.go"
cat > "$tmp/overlay.json" <<JSON
{"Replace": {
  "$PWD/metal/bridge_darwin.go": "",
  "$PWD/metal/device_other.go": "",
  "$PWD/metal/zz_bridge_cgo1.go": "$tmp/zz_bridge_cgo1.go",
  "$PWD/metal/zz_cgo_gotypes.go": "$tmp/zz_gotypes.go"
}}
JSON
GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $GO vet -overlay "$tmp/overlay.json" ./metal/

echo "== clang: Objective-C bridge and MSL library against stub headers"
$GO test -count=1 -run 'TestObjCBridgeParsesWithStubs|TestMSLParsesWithStub' ./metal/...

echo "== go test ./metal/..."
$GO test ./metal/...
echo "metal-check: all passed"
