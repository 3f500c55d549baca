#!/usr/bin/env bash
# Runs the shell commands of README.md as written, in a fresh `git clone`
# of this repository (its committed HEAD) in a temporary directory, with
# ../shared beside the clone linked to this checkout's ../shared when it
# exists, and reports PASS/FAIL/SKIP for each. Commands come from ```sh
# blocks and from inline `code` that starts with make, go, bin/marlin-run,
# marlin-run or VAR=value before one of those. `marlin-run` runs the clone's
# bin/marlin-run (on PATH after `make build`).
#
# Skipped unless --all: slow suites (make test, MARLIN_SLOW=1, scale test,
# resume check, benchmarks); always skipped: templates (<model>, JOB.yaml,
# PATH), jobs on real models (MODEL=/data/...), commands that fetch a
# released version (@latest), make metal-check without clang, make lint
# without staticcheck. Each command
# runs in the clone's root with a 10-minute limit.
#   scripts/readme-commands.sh [--all] [--keep]
set -uo pipefail
all=0 keep=0
for a in "$@"; do
	case $a in
	--all) all=1 ;;
	--keep) keep=1 ;;
	*) echo "usage: $0 [--all] [--keep]" >&2; exit 2 ;;
	esac
done
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
cleanup() { if [ "$keep" = 1 ]; then echo "clone kept in $tmp/marlin"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
git clone --quiet "$src" "$tmp/marlin" || exit 1
if [ -d "$src/../shared" ]; then ln -s "$(cd "$src/../shared" && pwd)" "$tmp/shared"; fi
cd "$tmp/marlin" || exit 1
export PATH="$PWD/bin:$PATH"

# extract: one command a line (fenced sh blocks, then inline spans, joined
# across line breaks), in README order of kind, duplicates removed.
mapfile -t cmds < <(perl -0777 -ne '
	my $t = $_;
	while ($t =~ /^```(?:sh|bash|console)\n(.*?)^```/msg) {
		for my $l (split /\n/, $1) { $l =~ s/\s+#.*$//; $l =~ s/^\$ //; print "$l\n" if $l =~ /\S/; }
	}
	$t =~ s/^```.*?^```//msg;
	$t =~ s/<!-- BEGIN GENERATED.*?END GENERATED[^>]*-->//sg;
	while ($t =~ /`([^`]+)`/g) {
		my $c = $1; $c =~ s/\s*\n\s*/ /g;
		print "$c\n" if $c =~ /^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:make|go|bin\/marlin-run|marlin-run)(?:\s|$)/;
	}' README.md | awk '!seen[$0]++')

skip_reason() {
	local c=$1
	case $c in
	*'<'*'>'* | *JOB.yaml* | *' PATH'* | *'k=v'* | *'path=value'* | *'JOB'*) echo "template"; return ;;
	*MODEL=/data/*) echo "needs a real model"; return ;;
	*@latest*) echo "fetches a released version"; return ;;
	'go install'*) echo "installs a tool"; return ;;
	esac
	case $c in
	marlin-run | 'marlin-run '[a-z]*) if [[ $c =~ ^marlin-run( (run|plan|status|gc|validate|inspect|ppl|generate|report))?$ ]]; then echo "a command's name in prose"; return; fi ;;
	esac
	if [ "$c" = "make lint" ] && ! command -v staticcheck >/dev/null && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then echo "needs staticcheck (see the go install line)"; return; fi
	if [ "$c" = "make metal-check" ] && ! command -v clang >/dev/null; then echo "needs clang"; return; fi
	if [ "$all" = 0 ]; then
		case $c in
		'make test' | *MARLIN_SLOW=1* | *scale-test* | *demo-resume-check* | 'make bench'* | *MARLIN_PPL=* | *marlin-synth*) echo "slow (--all runs it)"; return ;;
		esac
	fi
	echo ""
}

pass=0 fail=0 skip=0
failed=()
for c in "${cmds[@]}"; do
	r=$(skip_reason "$c")
	if [ -n "$r" ]; then
		printf 'SKIP %s  (%s)\n' "$c" "$r"; skip=$((skip + 1)); continue
	fi
	log=$tmp/cmd$((pass + fail)).log
	start=$SECONDS
	if timeout 600 bash -c "$c" >"$log" 2>&1; then
		printf 'PASS %s  (%ds)\n' "$c" $((SECONDS - start)); pass=$((pass + 1))
	else
		printf 'FAIL %s  (%ds, exit %d)\n' "$c" $((SECONDS - start)) "$?"; fail=$((fail + 1))
		failed+=("$c")
		tail -n 15 "$log" | sed 's/^/    /'
	fi
done
echo "readme commands: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
