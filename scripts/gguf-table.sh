#!/bin/sh
# Regenerates README's "GGUF against llama-quantize" table: for each nano
# model and size class, llama-quantize with an imatrix (llama-imatrix on
# corpus/calib.txt, -c 256) and marlin (GPTQ on the GGML grids with the
# quantize stage's gguf_recipe of the same name: the same per-tensor
# types, TestMixturesMatchLlamaQuantize), both scored by llama-perplexity
# on corpus/valid.txt (-c 256 --chunks 64 -b 256), KL divergence against
# the F16 model's logits (the protocol of
# ../shared/tools/llama.cpp/anchors.md).
#   scripts/gguf-table.sh [model ...]     (default: all three; ~40 min on 2 busy cores)
# TYPES overrides the size classes ("Q3_K_M Q4_K_M"); GPTQ overrides the
# quantize default settings (default "actorder: true, damp: 0.01", the
# documented defaults) and GPTQ_<TYPE> those of one class (GPTQ_Q3_K_M=
# "actorder: false, damp: 0.01"); CALIB (", shrink_experts: true") and
# CALIB_<TYPE> add calibrate settings. BPW lists MODEL:TYPE:B triples
# ("qwen3moe-nano:Q3_K_M:4.58"): that cell's marlin file comes from
# quantize's target_bpw at B bits per weight (B chosen so the file is no
# larger than llama-quantize's) instead of the recipe's mixture. Choose
# them on calibration data only: scripts/gguf-heldout.sh; README says
# which the table used.
# Writes runs/gguf-table/table.md (and per-run logs next to it).
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
td=$(cd "$root/../shared/testdata" && pwd)
bin=$("$root/../shared/tools/llama.cpp/bin.sh")
out=$root/runs/gguf-table
mkdir -p "$out"
cd "$root"
go build -o bin/marlin-run ./cmd/marlin-run
models=${*:-qwen3-nano qwen3moe-nano glm47-nano}
types=${TYPES:-Q2_K Q3_K_M IQ4_XS Q4_K_M}
gptq=${GPTQ:-actorder: true, damp: 0.01}
calibx=${CALIB:-}
ppl() { # model.gguf log -> "ppl kld top1", from the last chunk's line (cumulative
  # values); this build's logger sometimes loses the last lines: retry
  for try in 1 2 3; do
    "$bin/llama-perplexity" -m "$1" -f "$td/corpus/valid.txt" -c 256 --chunks 64 -b 256 -t 2 \
      --kl-divergence-base "$kld" --kl-divergence --log-file "$2" >"$2.out" 2>&1 || true
    r=$(cat "$2" "$2.out" | awk '$1=="64" && NF>=15 {print $2, $8, $15; exit}')
    if [ -n "$r" ]; then echo "$r"; return; fi
  done
  echo "? ? ?"
}
for m in $models; do
  d=$out/$m
  mkdir -p "$d"
  rm -f "$d/rows.md"
  f16=$d/f16.gguf
  if [ "$m" = qwen3-nano ]; then
    cp "$td/gguf/qwen3-nano-f16.gguf" "$f16"
  else
    cat >"$d/f16.yaml" <<EOF
version: 1
name: f16-$m
workdir: $d/f16-run
resources: {memory: 1GiB, workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: $td/models/$m}}
  - {id: gguf, kind: pack, needs: [load], with: {format: gguf, gguf_type: f16, out: f16.gguf, model: $td/models/$m}}
EOF
    bin/marlin-run run "$d/f16.yaml" >"$d/f16.log" 2>&1
    cp "$d/f16-run/out/f16.gguf" "$f16"
  fi
  kld=$d/base.kld
  "$bin/llama-perplexity" -m "$f16" -f "$td/corpus/valid.txt" -c 256 --chunks 64 -b 256 -t 2 \
    --kl-divergence-base "$kld" >"$d/base.log" 2>&1
  "$bin/llama-imatrix" -m "$f16" -f "$td/corpus/calib.txt" -c 256 -t 2 -o "$d/imatrix.gguf" >"$d/imatrix.log" 2>&1
  for ty in $types; do
    lq=$d/llama-$ty.gguf
    "$bin/llama-quantize" --imatrix "$d/imatrix.gguf" "$f16" "$lq" "$ty" 2 >"$d/quantize-$ty.log" 2>&1
    set -- $(ppl "$lq" "$d/ppl-llama-$ty.log")
    echo "| $m | $ty | llama-quantize + imatrix | $(stat -c %s "$lq") | $1 | $2 | $3 |" >>"$d/rows.md"
    recipe=$(echo "$ty" | tr 'A-Z' 'a-z')
    eval "set -- \"\${GPTQ_$ty:-$gptq}\" \"\${CALIB_$ty:-$calibx}\""
    gq=$1 cx=$2
    mix="gguf_recipe: $recipe" label="marlin GPTQ"
    for t in ${BPW:-}; do
      case "$t" in "$m:$ty:"*) b=${t##*:}; mix="target_bpw: $b" label="marlin GPTQ, target_bpw $b" ;; esac
    done
    cat >"$d/marlin-$ty.yaml" <<EOF
version: 1
name: gguf-$m-$ty
workdir: $d/marlin-$ty
resources: {memory: 1GiB, workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: $td/models/$m}}
  - id: calib
    kind: calibrate
    needs: [load]
    with: {model: $td/models/$m, text: $td/corpus/calib.txt, samples: 256, seq_len: 256$cx}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {method: gptq, $gq}
      $mix
      report: quant-report.json
  - {id: gguf, kind: pack, needs: [quant], with: {format: gguf, out: marlin.gguf, model: $td/models/$m}}
EOF
    bin/marlin-run run --fresh "$d/marlin-$ty.yaml" >"$d/marlin-$ty.log" 2>&1
    mg=$d/marlin-$ty/out/marlin.gguf
    set -- $(ppl "$mg" "$d/ppl-marlin-$ty.log")
    echo "| $m | $ty | $label | $(stat -c %s "$mg") | $1 | $2 | $3 |" >>"$d/rows.md"
  done
  set -- $(ppl "$f16" "$d/ppl-f16.log")
  echo "| $m | F16 | - | $(stat -c %s "$f16") | $1 | $2 | $3 |" >>"$d/rows.md"
done
{
  echo "| model | mixture | quantizer | file bytes | ppl | mean KLD | same top-1 % |"
  echo "|---|---|---|---|---|---|---|"
  for m in qwen3-nano qwen3moe-nano glm47-nano; do
    [ -f "$out/$m/rows.md" ] && cat "$out/$m/rows.md"
  done
} >"$out/table.md"
cat "$out/table.md"
