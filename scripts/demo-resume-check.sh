#!/usr/bin/env bash
# Resume check for the nano demo (issue 13): run `make demo` into workdir A,
# send SIGINT to its process group (what Ctrl-C does) once the first
# MR-GPTQ quantize task has finished, re-run `make demo` (it resumes from
# the checkpoints), then run the demo uninterrupted into workdir B and
# compare the sha256 of every quantized output (GGUF file, native packed
# model, quantize report). Exit 1 on any difference.
# The two workdirs (about 170 MB) are deleted on exit when the script made
# its own temporary directory, unless the check failed (then it says where
# they are) or KEEP=1; a TMPDIR given as argument is left in place.
#   scripts/demo-resume-check.sh [TMPDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
own=0
if [ $# -ge 1 ]; then base=$1; else base=$(mktemp -d); own=1; fi
a=$base/interrupted b=$base/uninterrupted
pid=
cleanup() {
	rc=$?
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -INT -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	if [ "$own" = 1 ]; then
		if [ "$rc" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
			echo "workdirs and logs kept in $base"
		else
			rm -rf "$base"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$a" "$b"; mkdir -p "$base"
make -s build

echo "== run 1 (to be interrupted during quantize) in $a"
setsid make -s demo DEMO_WORKDIR="$a" DEMO_FLAGS="--log-format json" >"$base/run1.log" 2>&1 &
pid=$!
# wait for the first finished quant task in the journal (GPTQ under way)
for _ in $(seq 1 1200); do
	if grep -q '"stage":"quant"' "$a/journal.jsonl" 2>/dev/null; then break; fi
	if ! kill -0 "$pid" 2>/dev/null; then echo "run 1 ended before quantize started"; exit 1; fi
	sleep 0.1
done
kill -INT -- "-$pid"
rc=0; wait "$pid" || rc=$?
pid=
done_before=$(grep -c '"stage":"quant"' "$a/journal.jsonl" || true)
echo "interrupted: make exit $rc, $done_before quant tasks journaled"
tail -n 3 "$base/run1.log" | cut -c1-200
if [ "$rc" -eq 0 ]; then echo "run 1 was not interrupted (finished first)"; exit 1; fi

echo "== run 2 (resume) in $a"
make -s demo DEMO_WORKDIR="$a" 2>&1 | tail -n 3 | cut -c1-200
echo "== run 3 (uninterrupted) in $b"
make -s demo DEMO_WORKDIR="$b" >"$base/run3.log" 2>&1

sums() { (cd "$1/out" && find . -type f \( -name '*.gguf' -o -name '*.safetensors' -o -name '*.index.json' -o -name marlin.json -o -name quant-report.json -o -name validate.json \) -print0 | sort -z | xargs -0 sha256sum); }
sums "$a" >"$base/a.sha256"
sums "$b" >"$base/b.sha256"
cat "$base/a.sha256"
if diff "$base/a.sha256" "$base/b.sha256"; then
	echo "OK: resumed outputs are identical to the uninterrupted run ($(wc -l <"$base/a.sha256") files)"
else
	echo "FAIL: outputs differ"; exit 1
fi
