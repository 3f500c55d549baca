#!/bin/sh
# Chooses GPTQ settings for the GGUF table on calibration data only: the
# first three quarters of corpus/calib.txt (by lines) calibrate, the last
# quarter is held out and scored by llama-perplexity (-c 256 --chunks 64 -b
# 256, KL divergence against the F16 model's logits on the same text).
# valid.txt, which the README table scores, is never read.
#   scripts/gguf-heldout.sh MODEL RECIPE "CAND ..."
# CAND is a comma-separated list of quantize default settings, e.g.
# "damp=0.01 damp=0.1 damp=0.1,refit=true actorder=false,damp=0.01
# damp=0.1,shrink_experts=true" (keys ending in _experts are calibrate
# settings; target_bpw=B replaces RECIPE's mixture by quantize's own
# allocation at B bits per weight); actorder defaults to true. Prints "settings bytes ppl kld top1" per
# candidate (runs/gguf-heldout/MODEL/RECIPE/).
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
td=$(cd "$root/../shared/testdata" && pwd)
bin=$("$root/../shared/tools/llama.cpp/bin.sh")
m=$1 recipe=$2 cands=$3
out=$root/runs/gguf-heldout
mkdir -p "$out/$m/$recipe"
cd "$root"
go build -o bin/marlin-run ./cmd/marlin-run
n=$(wc -l <"$td/corpus/calib.txt")
k=$((n * 3 / 4))
head -n "$k" "$td/corpus/calib.txt" >"$out/fit.txt"
tail -n +"$((k + 1))" "$td/corpus/calib.txt" >"$out/held.txt"
f16=$out/$m/f16.gguf
if [ ! -f "$f16" ]; then
  cat >"$out/$m/f16.yaml" <<EOY
version: 1
name: f16-$m
workdir: $out/$m/f16-run
resources: {memory: 1GiB, workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: $td/models/$m}}
  - {id: gguf, kind: pack, needs: [load], with: {format: gguf, gguf_type: f16, out: f16.gguf, model: $td/models/$m}}
EOY
  bin/marlin-run run "$out/$m/f16.yaml" >"$out/$m/f16.log" 2>&1
  cp "$out/$m/f16-run/out/f16.gguf" "$f16"
fi
kld=$out/$m/held.kld
[ -f "$kld" ] || "$bin/llama-perplexity" -m "$f16" -f "$out/held.txt" -c 256 --chunks 64 -b 256 -t 2 \
  --kl-divergence-base "$kld" >"$out/$m/held-base.log" 2>&1
for c in $cands; do
  d=$out/$m/$recipe/$(echo "$c" | tr ',=' '_-')
  mkdir -p "$d"
  # quantize settings, then calibrate ones (shrink_experts, all_experts)
  spec=$(echo "actorder=true,$c" | awk -F, '{for (i=1;i<=NF;i++) {split($i,kv,"="); if (kv[1] ~ /_experts$/ || kv[1] == "target_bpw") continue; v[kv[1]]=kv[2]; if (!(kv[1] in seen)) {seen[kv[1]]=1; o[++n]=kv[1]}} s=""; for (i=1;i<=n;i++) s=s (i>1?", ":"") o[i] ": " v[o[i]]; print s}')
  cspec=$(echo "$c" | awk -F, '{s=""; for (i=1;i<=NF;i++) {split($i,kv,"="); if (kv[1] ~ /_experts$/) s=s ", " kv[1] ": " kv[2]} print s}')
  mix=$(echo "$c" | awk -F, -v r="$recipe" '{s="gguf_recipe: " r; for (i=1;i<=NF;i++) {split($i,kv,"="); if (kv[1] == "target_bpw") s="target_bpw: " kv[2]} print s}')
  cat >"$d/job.yaml" <<EOY
version: 1
name: heldout-$m-$recipe
workdir: $d/run
resources: {memory: 1GiB, workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: $td/models/$m}}
  - id: calib
    kind: calibrate
    needs: [load]
    with: {model: $td/models/$m, text: $out/fit.txt, samples: 160, seq_len: 256$cspec}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {method: gptq, $spec}
      $mix
  - {id: gguf, kind: pack, needs: [quant], with: {format: gguf, out: marlin.gguf, model: $td/models/$m}}
EOY
  bin/marlin-run run --fresh "$d/job.yaml" >"$d/run.log" 2>&1
  g=$d/run/out/marlin.gguf
  r="? ? ?"
  for try in 1 2 3; do
    "$bin/llama-perplexity" -m "$g" -f "$out/held.txt" -c 256 --chunks 64 -b 256 -t 2 \
      --kl-divergence-base "$kld" --kl-divergence --log-file "$d/ppl.log" >"$d/ppl.out" 2>&1 || true
    x=$(cat "$d/ppl.log" "$d/ppl.out" | awk '$1=="64" && NF>=15 {print $2, $8, $15; exit}')
    if [ -n "$x" ]; then r=$x; break; fi
  done
  echo "$c $(stat -c %s "$g") $r"
done
