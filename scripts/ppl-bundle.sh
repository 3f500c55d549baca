#!/usr/bin/env bash
# Bundles the perplexity table's test binary (stages TestPerplexityTable,
# built with CGO_ENABLED=0) and the shared assets it reads (the nano
# models' weights, config and tokenizer; corpus/calib.txt and valid.txt)
# into .carry/ppl.tgz, for a machine without Go: unpack it there and run
# ppl.test with MARLIN_TESTDATA=<dir>/testdata (see stages/testdata/ppl/PPL.md).
#   scripts/ppl-bundle.sh [shared-testdata-dir]   (default ../shared/testdata)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/testdata}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/testdata/corpus" .carry
cp "$src/corpus/calib.txt" "$src/corpus/valid.txt" "$tmp/testdata/corpus/"
for m in qwen3-nano qwen3moe-nano glm47-nano; do
	mkdir -p "$tmp/testdata/models/$m"
	for f in "$src/models/$m"/*; do
		case ${f##*/} in golden.safetensors | tensors.json) continue ;; esac
		cp "$f" "$tmp/testdata/models/$m/"
	done
done
CGO_ENABLED=0 go test -c -ldflags='-s -w' -o "$tmp/ppl.test" ./stages
tar -C "$tmp" -czf .carry/ppl.tgz ppl.test testdata
ls -l .carry/ppl.tgz
