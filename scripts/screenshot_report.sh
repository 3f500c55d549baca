#!/bin/sh
# Screenshot a marlin report.html with headless Chromium (Debian's
# `chromium` package; installed with apt-get when missing and run as root).
#   scripts/screenshot_report.sh runs/nano-demo/out/report.html [out.png] [WIDTHxHEIGHT]
# The report is self-contained (plots are embedded PNGs), so the browser
# needs no network; the flags keep it from reaching out anyway.
set -eu
html=${1:?usage: $0 REPORT.html [OUT.png] [WIDTHxHEIGHT]}
out=${2:-${html%.html}.png}
size=${3:-1280x2000}
[ -f "$html" ] || { echo "$0: $html: no such file" >&2; exit 1; }
if ! command -v chromium >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
	else
		echo "$0: chromium not found (apt-get install -y chromium)" >&2
		exit 1
	fi
fi
abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$profile" --hide-scrollbars --screenshot="$out" \
	--window-size="$(echo "$size" | tr x ,)" "file://$abs" >/dev/null 2>&1
[ -s "$out" ] || { echo "$0: chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
