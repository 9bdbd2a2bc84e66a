#!/bin/bash
# Two broker binaries side by side on the hook benchmark's topics, to
# tell a change from the machine's drift (on a shared 2-core machine,
# runs minutes apart differ by more than most changes). Both brokers run
# at once, idle in turn; each repeat produces to every case on A then B,
# or B then A, alternately. Prints the medians. Never part of `make test`.
#
#   bench/hooks_ab.sh BIN_A BIN_B [RECORDS] [REPEATS] [CASES]
#
# CASES: of none filter batch mask (default: all). MASK_A / MASK_B: the
# JSON mask script each broker runs (default scripts/examples/mask_pii.lua),
# for comparing a binary with the script of its own commit.
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?BIN_A}
B=${2:?BIN_B}
N=${3:-200000}
REPEATS=${4:-10}
CASES=${5:-none filter batch mask}
command -v kcat >/dev/null || { echo "kcat is needed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/skald-hooks-ab.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

. bench/hooks_common.sh
hooks_records "$N" "$tmp/records.jsonl"

declare -A port pid
start() { # name binary mask-script
	local p

	p=$(hooks_free_port)
	hooks_yaml "$p" "$tmp/data-$1" "$3" > "$tmp/$1.yaml"
	"$2" -c "$tmp/$1.yaml" 2> "$tmp/$1.log" &
	pid[$1]=$!
	pids+=($!)
	port[$1]=$p
	for _ in $(seq 50); do
		kcat -b 127.0.0.1:$p -L >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "broker $1 did not start: $(tail -3 "$tmp/$1.log")" >&2
	exit 1
}
start a "$A" "${MASK_A:-}"
start b "$B" "${MASK_B:-}"

cpu_ns() {
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}
# "NAME CASE RECORDS/S BROKER-CPU-NS/RECORD"
produce() {
	local c0 t0 t1 c1
	c0=$(cpu_ns "${pid[$1]}")
	t0=$(date +%s.%N)
	kcat -b 127.0.0.1:${port[$1]} -t "bench.$2" -P -X acks=1 -X linger.ms=5 \
		-X batch.num.messages=10000 -X queue.buffering.max.messages=1000000 \
		< "$tmp/records.jsonl"
	t1=$(date +%s.%N)
	c1=$(cpu_ns "${pid[$1]}")
	echo "$1 $2 $t0 $t1 $c0 $c1" | awk -v n="$N" '{ printf "%s %s %.0f %.0f\n", $1, $2, n / ($4 - $3), ($6 - $5) / n }'
}

for c in $CASES; do produce a "$c" > /dev/null; produce b "$c" > /dev/null; done
for r in $(seq "$REPEATS"); do
	for c in $CASES; do
		if [ $((r % 2)) = 0 ]; then
			produce a "$c"; produce b "$c"
		else
			produce b "$c"; produce a "$c"
		fi
	done
done > "$tmp/runs"

echo "A = $A, B = $B; $N records, $REPEATS repeats, medians"
for c in $CASES; do
	for w in a b; do
		awk -v w=$w -v c="$c" '$1 == w && $2 == c { print $3, $4 }' "$tmp/runs" |
			sort -n | awk -v w=$w -v c="$c" '{ r[NR] = $1 } END { printf "%s %-6s %8.0f records/s", toupper(w), c, r[int((NR + 1) / 2)] }'
		awk -v w=$w -v c="$c" '$1 == w && $2 == c { print $4 }' "$tmp/runs" |
			sort -n | awk '{ v[NR] = $1 } END { printf "  broker CPU %5.0f ns/record\n", v[int((NR + 1) / 2)] }'
	done
done
