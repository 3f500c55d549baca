#!/bin/sh
# The flagship job at real width (issue 17): a synthetic GLM-4.7-Flash
# (cmd/marlin-synth: real tensor names and shapes at WIDTH_DIV=1, LAYERS
# decoder layers, random BF16 weights, bundled byte-level BPE tokenizer)
# through pipelines/glm47-synth-mrgptq.yaml (Hadamard rotate, calibrate
# SAMPLES x SEQ_LEN, layer-streamed MR-GPTQ MXFP4, GGUF + native) under MEM,
# then one summary table: peak RSS, workdir (blobs by stage, out), wall
# time, and per layer the layer task's build/calibrate/quantize seconds
# (out/quant-report.json "layers") and the act task's seconds (JSON events).
#
# Needs no Go: static binaries built elsewhere and carried along, e.g.
#   CGO_ENABLED=0 go build -o bin/marlin-run ./cmd/marlin-run
#   CGO_ENABLED=0 go build -o bin/marlin-synth ./cmd/marlin-synth
#   scripts/realwidth.sh                          # H100 host: 16 cores, 128 GiB
#   WIDTH_DIV=16 LAYERS=2 SAMPLES=4 SEQ_LEN=128 MEM=512MiB scripts/realwidth.sh
# ARCH=nemotron3-nano does the same for a synthetic Nemotron-3-Nano-30B-A3B
# (pipelines/nemotron3-synth-mrgptq.yaml; its first 6 layers are M E M E M *).
# JOB=pipelines/glm47-fp4.yaml runs the shipped job instead (its samples and
# seq_len are fixed in the file: add --set stages.calib.with.samples=N to
# RUN_FLAGS to change them; validate reads EVAL_TEXT, default demo/eval.txt).
# Environment (defaults): ARCH (glm47), BIN (bin), WIDTH_DIV (1), LAYERS (6), SAMPLES (128),
# SEQ_LEN (2048), MEM (100GiB), WORKERS (0: the CPUs), BACKEND (auto),
# RUN_DIR (runs/realwidth), CALIB_SRC (demo/calib.txt), RUN_FLAGS (extra
# marlin-run run flags, e.g. --allow-over-budget); KEEP_MODEL=1 reuses a
# model already generated with the same WIDTH_DIV and LAYERS; JOB runs
# another job with the same variables (pipelines/glm47-synth-gguf.yaml:
# GPTQ onto the Q4_K_M mixture and a GGUF file).
# The run starts fresh (--fresh) so that the timings are a whole run's.
# With GODEBUG=gctrace=1 the summary adds the peak live heap (what the Go
# collector found reachable, at its largest): under a memory budget the
# collector lets RSS rise to the budget, so VmHWM alone does not say how
# much the run needed.
set -eu

BIN=${BIN:-bin}
WIDTH_DIV=${WIDTH_DIV:-1}
LAYERS=${LAYERS:-6}
SAMPLES=${SAMPLES:-128}
SEQ_LEN=${SEQ_LEN:-2048}
MEM=${MEM:-100GiB}
WORKERS=${WORKERS:-0}
BACKEND=${BACKEND:-auto}
RUN_DIR=${RUN_DIR:-runs/realwidth}
CALIB_SRC=${CALIB_SRC:-demo/calib.txt}
RUN_FLAGS=${RUN_FLAGS:-}
ARCH=${ARCH:-glm47}
case "$ARCH" in
glm47) DEFAULT_JOB=pipelines/glm47-synth-mrgptq.yaml ;;
nemotron3-nano) DEFAULT_JOB=pipelines/nemotron3-synth-mrgptq.yaml ;;
*) echo "realwidth: unknown ARCH $ARCH (glm47 or nemotron3-nano)" >&2; exit 2 ;;
esac
JOB=${JOB:-$DEFAULT_JOB}
EVAL_TEXT=${EVAL_TEXT:-demo/eval.txt}

cd "$(dirname "$0")/.."
for b in marlin-run marlin-synth; do
	[ -x "$BIN/$b" ] || { echo "realwidth: $BIN/$b missing (CGO_ENABLED=0 go build -o $BIN/$b ./cmd/$b)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "realwidth: python3 needed for the summary" >&2; exit 2; }
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
BIN=$(cd "$BIN" && pwd)
MODEL=$RUN_DIR/model
WORK=$RUN_DIR/work
LOG=$RUN_DIR/run.log
TEXT=$RUN_DIR/calib.txt

# 1. The synthetic model.
stamp="$ARCH width-div $WIDTH_DIV layers $LAYERS"
if [ "${KEEP_MODEL:-}" = 1 ] && [ -f "$MODEL/.realwidth" ] && [ "$(cat "$MODEL/.realwidth")" = "$stamp" ]; then
	echo "realwidth: reusing $MODEL ($stamp)"
else
	rm -rf "$MODEL"
	t0=$(date +%s)
	"$BIN/marlin-synth" -arch "$ARCH" -out "$MODEL" -width-div "$WIDTH_DIV" -layers "$LAYERS" -shard-mb 4096
	echo "$stamp" >"$MODEL/.realwidth"
	echo "realwidth: model generated in $(($(date +%s) - t0))s"
fi

# 2. Calibration text: SAMPLES x SEQ_LEN tokens. The bundled tokenizer (a
# 2k-token BPE) averages under 4 bytes a token on English text; repeat
# CALIB_SRC until the text holds 6 bytes per token needed. calibrate warns
# (and the summary says) if it still holds fewer windows than requested.
need=$((SAMPLES * SEQ_LEN * 6))
: >"$TEXT"
size=0
while [ "$size" -lt "$need" ]; do
	cat "$CALIB_SRC" >>"$TEXT"
	size=$(wc -c <"$TEXT")
done
echo "realwidth: calibration text $TEXT: $size bytes for $SAMPLES x $SEQ_LEN tokens"

# 3. The job.
echo "realwidth: running $JOB under $MEM (log: $LOG)"
t0=$(date +%s)
rc=0
MODEL=$MODEL WORKDIR=$WORK CALIB_TEXT=$TEXT EVAL_TEXT=$(cd "$(dirname "$EVAL_TEXT")" && pwd)/$(basename "$EVAL_TEXT") SAMPLES=$SAMPLES SEQ_LEN=$SEQ_LEN MEM=$MEM WORKERS=$WORKERS BACKEND=$BACKEND \
	"$BIN/marlin-run" run --fresh --log-format json $RUN_FLAGS "$JOB" >"$LOG" 2>&1 || rc=$?
wall=$(($(date +%s) - t0))
[ "$rc" = 0 ] || { echo "realwidth: marlin-run exited $rc after ${wall}s; last lines of $LOG:" >&2; tail -n 20 "$LOG" >&2; }

# 4. Summary.
python3 - "$LOG" "$WORK" "$MODEL" "$wall" "$rc" "$MEM" "$SAMPLES" "$SEQ_LEN" "$WIDTH_DIV" "$LAYERS" <<'EOF'
import json, os, sys
log, work, model, wall, rc, mem, samples, seqlen, wdiv, layers = sys.argv[1:]
def mib(b):
    return "%.1f MiB" % (b / 2**20) if b < 2**30 else "%.2f GiB" % (b / 2**30)
def size(p):
    n = 0
    for root, _, files in os.walk(p):
        for f in files:
            fp = os.path.join(root, f)
            if os.path.isfile(fp) and not os.path.islink(fp):
                n += os.path.getsize(fp)
    return n if os.path.isdir(p) else (os.path.getsize(p) if os.path.isfile(p) else 0)

import re
gc_live = re.compile(r"(\d+)->(\d+)->(\d+) MB")
events, peak, warns, errors, live = [], None, [], [], None
for line in open(log, errors="replace"):
    if line.startswith("gc "):
        m = gc_live.search(line)
        if m:
            live = max(live or 0, int(m.group(3)) << 20)
        continue
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if not isinstance(e, dict):
        continue
    if "event" in e:
        events.append(e)
    if "peak_rss_bytes" in e:
        peak = e["peak_rss_bytes"]
    if e.get("level") == "WARN" and "calib" in e.get("msg", ""):
        warns.append(e.get("msg", "") + ": %s windows of %s requested" % (e.get("windows"), e.get("requested_windows")))
    if e.get("level") == "ERROR":
        errors.append(e.get("msg", "") + " " + str(e.get("err", e.get("error", ""))))

# Task seconds and estimates from the events.
done, est = {}, {}
for e in events:
    k = (e.get("stage"), e.get("key"))
    if e["event"] == "started":
        est[k] = e.get("bytes", 0)
    elif e["event"] == "done":
        done[k] = e.get("seconds", 0.0)
stage_secs = {}
for (st, _), s in done.items():
    stage_secs[st] = stage_secs.get(st, 0.0) + s

# Blobs by stage (journal: task id -> stage), out/, journal.
stage_of = {}
jp = os.path.join(work, "journal.jsonl")
if os.path.exists(jp):
    for line in open(jp):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if "id" in e:
            stage_of[e["id"]] = e["stage"] + (" act.*" if e.get("key", "").startswith("act.") else "")
blobs = {}
bd = os.path.join(work, "blobs")
for root, _, files in os.walk(bd):
    for f in files:
        st = stage_of.get(f[:-len(".arrow")] if f.endswith(".arrow") else f, "other")
        blobs[st] = blobs.get(st, 0) + os.path.getsize(os.path.join(root, f))
out = os.path.join(work, "out")

rows = []
def row(k, v):
    rows.append((k, v))
row("model", "%s (width-div %s, %s layers)" % (mib(size(model)), wdiv, layers))
row("calibration", "%s x %s tokens" % (samples, seqlen))
row("memory budget", mem)
row("exit status", rc + ("" if rc == "0" else "  (see the log)"))
row("wall time", "%s s" % wall)
row("peak RSS (VmHWM)", mib(peak) if peak else "not logged")
if live:
    row("peak live heap (gctrace)", mib(live))
if est:
    k = max(est, key=est.get)
    row("largest task estimate", "%s (%s/%s)" % (mib(est[k]), k[0], k[1]))
row("workdir total", mib(size(work)))
for st in sorted(blobs):
    row("  blobs " + st, mib(blobs[st]))
row("  out/", mib(size(out)))
if os.path.isdir(out):
    for f in sorted(os.listdir(out)):
        row("    " + f, mib(size(os.path.join(out, f))))
for st in sorted(stage_secs):
    row("seconds in " + st + " tasks", "%.1f" % stage_secs[st])
for w in warns:
    row("WARNING", w)
for e in errors[-3:]:
    row("ERROR", e)

layer_stats = {}
rp = os.path.join(out, "quant-report.json")
if os.path.exists(rp):
    for l in json.load(open(rp)).get("layers") or []:
        layer_stats[l["task"]] = l.get("stats", {})
nl = max([int(k[1].split(".")[1]) for k in done if k[0] == "quant" and k[1].startswith(("layer.", "act."))] + [-1]) + 1

w = max(len(k) for k, _ in rows)
print()
print("=" * 78)
print("realwidth summary")
print("=" * 78)
for k, v in rows:
    print("%-*s  %s" % (w, k, v))
print()
print("%-6s %8s %8s %8s %8s %8s %8s %8s %6s %8s %10s" % ("layer", "layer_s", "build_s", "calib_s", "fwd_s", "fwd_GF/s",
      "hess_s", "hess_GF/s", "passes", "quant_s", "layer_est"))
for l in range(nl):
    s = layer_stats.get("layer.%d" % l, {})
    lt = done.get(("quant", "layer.%d" % l))
    f = lambda x: "-" if x is None else "%.1f" % x
    rate = lambda gf, sec: "-" if not gf or not sec else "%.0f" % (gf / sec)
    print("%-6d %8s %8s %8s %8s %8s %8s %8s %6s %8s %10s" % (l, f(lt), f(s.get("build_s")), f(s.get("calibrate_s")),
          f(s.get("forward_s")), rate(s.get("forward_gflop"), s.get("forward_s")),
          f(s.get("hessian_s")), rate(s.get("hessian_gflop"), s.get("hessian_s")),
          "-" if "passes" not in s else "%d" % s["passes"], f(s.get("quantize_s")),
          mib(est[("quant", "layer.%d" % l)]) if ("quant", "layer.%d" % l) in est else "-"))
print()
print("%-6s %8s" % ("act", "act_s"))
for l in range(nl + 1):
    at = done.get(("quant", "act.%d" % l))
    if at is not None:
        print("%-6s %8.1f" % ("head" if l == nl else l, at))
print("(act.L: layer L's input, the embeddings for L=0, else act.L-1 through the quantized layer L-1;")
print(" fwd/hess: the calibration passes' Linear products and Hessian accumulation, GFLOP/s of each;")
print(" layer_s: the layer.L task's wall seconds = build + calibrate + quantize + writing its output)")
EOF
exit "$rc"
