#!/bin/sh
# kill -9 during a layer-streamed run, resume, compare (issue 17).
#
# Runs JOB (default pipelines/glm47-synth-mrgptq.yaml on the synthetic model
# that scripts/realwidth.sh generated in RUN_DIR/model) KILLS times with
# kill -9 at a random moment while quantize layer tasks run, resumes each
# time, and finally compares out/ with REF_WORK (a workdir
# of the same job run without interruption, e.g. realwidth.sh's RUN_DIR/work)
# byte for byte, except the per-layer seconds in quant-report.json.
# For each kill it prints which task was in flight and which tasks the
# resume re-did, so that "at most one layer re-done" can be read off.
# Environment: BIN (bin), RUN_DIR (runs/realwidth), REF_WORK
# (RUN_DIR/work), KILLS (3), MEM (24GiB), SAMPLES, SEQ_LEN (as the
# reference run), MIN_S / MAX_S (kill between these seconds after the first
# layer task started; 5 / 120).
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
RUN_DIR=${RUN_DIR:-runs/realwidth}
REF_WORK=${REF_WORK:-$RUN_DIR/work}
KILLS=${KILLS:-3}
MIN_S=${MIN_S:-5}
MAX_S=${MAX_S:-120}
JOB=${JOB:-pipelines/glm47-synth-mrgptq.yaml}
WORK=$RUN_DIR/killed
export MODEL=$RUN_DIR/model CALIB_TEXT=$RUN_DIR/calib.txt MEM=${MEM:-24GiB}
export SAMPLES=${SAMPLES:-8} SEQ_LEN=${SEQ_LEN:-2048} WORKDIR=$WORK
# As scripts/realwidth.sh passes it: validate.json records the path.
EVAL_TEXT=${EVAL_TEXT:-demo/eval.txt}
export EVAL_TEXT="$(cd "$(dirname "$EVAL_TEXT")" && pwd)/$(basename "$EVAL_TEXT")"
[ -d "$REF_WORK/out" ] || { echo "killresume: no reference run in $REF_WORK (run scripts/realwidth.sh first)" >&2; exit 2; }
rm -rf "$WORK"
i=0
fresh=--fresh
while :; do
	log=$RUN_DIR/killed.$i.log
	"$BIN/marlin-run" run $fresh --log-format json ${RUN_FLAGS:-} "$JOB" >"$log" 2>&1 &
	pid=$!
	fresh=
	if [ "$i" -ge "$KILLS" ]; then
		wait "$pid" || { echo "killresume: final resume failed; see $log" >&2; exit 1; }
		break
	fi
	# Wait for a layer task to start, then kill at a random moment.
	while kill -0 "$pid" 2>/dev/null && ! grep -q '"started".*"key":"layer\.' "$log"; do sleep 1; done
	delay=$(awk -v a="$MIN_S" -v b="$MAX_S" -v s="$$$i" 'BEGIN{srand(s); print int(a + rand()*(b-a))}')
	sleep "$delay"
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "killresume: run $i finished before the kill at ${delay}s"; wait "$pid" || true
		break
	fi
	kill -9 "$pid"; wait "$pid" 2>/dev/null || true
	inflight=$(python3 -c '
import json,sys
st={}
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except ValueError: continue
    if e.get("event")=="started": st[(e["stage"],e["key"])]=1
    if e.get("event")=="done": st.pop((e["stage"],e["key"]),None)
print(" ".join("%s/%s"%k for k in st))' "$log")
	echo "killresume: kill $((i + 1)) at ${delay}s after the first layer task; in flight: $inflight"
	i=$((i + 1))
done
# What each resume re-did: tasks done in log i+1 that were already done in log i.
python3 - "$RUN_DIR" "$i" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
def done(i):
    s = set()
    for l in open("%s/killed.%d.log" % (d, i)):
        try: e = json.loads(l)
        except ValueError: continue
        if e.get("event") == "done": s.add("%s/%s" % (e["stage"], e["key"]))
    return s
seen = set()
for i in range(n + 1):
    now = done(i)
    redo = sorted(k for k in now & seen if k.startswith("quant/layer.") or k.startswith("quant/act."))
    if i: print("resume %d re-did %d layer/act task(s): %s" % (i, len(redo), " ".join(redo) or "-"))
    seen |= now
PY
# Byte comparison with the uninterrupted run.
diffs=0
for f in $(cd "$REF_WORK/out" && find . -type f | sort); do
	case "$f" in
	*quant-report.json | */report.json)
		# Layer timings (layers[].stats), the benchmark's throughput and
		# the report's time of writing differ run to run; the rest must not.
		python3 -c '
import json, sys
def strip(x):
    if isinstance(x, dict): return {k: strip(v) for k, v in x.items() if k not in ("stats", "benchmark", "generated")}
    if isinstance(x, list): return [strip(v) for v in x]
    return x
a, b = (strip(json.load(open(p))) for p in sys.argv[1:])
sys.exit(0 if a == b else 1)' "$REF_WORK/out/$f" "$WORK/out/$f" && continue ;;
	*/benchmark.json | */benchmark.txt | */report.html)
		echo "killresume: out/$f holds measured throughput: not compared"
		continue ;;
	esac
	cmp -s "$REF_WORK/out/$f" "$WORK/out/$f" || { echo "killresume: out/$f differs"; diffs=$((diffs + 1)); }
done
echo "killresume: $(cd "$REF_WORK/out" && find . -type f | wc -l) files in out/ compared, $diffs differ"
[ "$diffs" = 0 ]
