#!/bin/bash
# Produce throughput through Lua hooks, all cases in one run, and the
# interpreter-vs-JIT cost of each hook. Writes bench/RESULTS-hooks.md
# (or $OUT). Never part of `make test`.
#
#   bench/hooks_bench.sh [RECORDS] [REPEATS]
#
# One broker (build/skald) with four topics: no hook, a trivial on_record
# filter (drop_filter.lua, which drops nothing here), the same filter as
# on_batch, and the JSON PII mask (mask_pii.lua). Each repeat produces the
# same RECORDS 100-byte JSON records to each topic with kcat (acks=1,
# librdkafka batching), in rotating order, and times it to the last
# delivery. Ratios are taken within a repeat; the table shows min / median
# / max. Then `skald hook-test --repeat` times each hook alone on one
# 10000-record batch, with the JIT off (what the broker runs) and on.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-200000}
REPEATS=${2:-3}
OUT=${OUT:-bench/RESULTS-hooks.md}
SKALD=${SKALD:-build/skald}
[ -x "$SKALD" ] || { echo "build $SKALD first (make build/skald)" >&2; exit 1; }
command -v kcat >/dev/null || { echo "kcat is needed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/skald-hooks-bench.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

. bench/hooks_common.sh
hooks_records "$N" "$tmp/records.jsonl"
port=$(hooks_free_port)
hooks_yaml "$port" "$tmp/data" > "$tmp/skald.yaml"
"$SKALD" -c "$tmp/skald.yaml" 2> "$tmp/skald.log" &
pid=$!
for _ in $(seq 50); do
	kcat -b 127.0.0.1:$port -L >/dev/null 2>&1 && break
	sleep 0.1
done

# CPU time of every broker thread so far, ns (/proc/PID/task/*/schedstat):
# unlike throughput, barely moved by other load on the machine.
cpu_ns() {
	cat /proc/$pid/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}

# "SECONDS CPU_NS": producing every record to topic $1 (kcat waits for
# delivery), and the broker's CPU time for it.
produce() {
	local t0 t1 c0 c1
	c0=$(cpu_ns)
	t0=$(date +%s.%N)
	kcat -b 127.0.0.1:$port -t "$1" -P -X acks=1 -X linger.ms=5 \
		-X batch.num.messages=10000 -X queue.buffering.max.messages=1000000 \
		< "$tmp/records.jsonl"
	t1=$(date +%s.%N)
	c1=$(cpu_ns)
	echo "$t0 $t1 $c0 $c1" | awk '{ printf "%.3f %.0f\n", $2 - $1, $4 - $3 }'
}

cases="none filter batch mask"
for c in $cases; do produce bench.$c > /dev/null; done   # warm up, create
declare -A secs cpu
for r in $(seq "$REPEATS"); do
	# Rotate the order so no case always runs first.
	arr=($cases)
	k=$(( (r - 1) % ${#arr[@]} ))
	order="${arr[*]:k} ${arr[*]:0:k}"
	for c in $order; do
		read -r secs[$c,$r] cpu[$c,$r] < <(produce bench.$c)
	done
done
# Every record must have arrived (nothing dropped or rejected).
# Records written: the partitions' end offsets (retention has deleted
# the oldest by now).
count=0
for p in 0 1; do
	end=$(kcat -b 127.0.0.1:$port -Q -t "bench.mask:$p:-1" 2>/dev/null |
		awk '/offset/ { print $NF }')
	count=$((count + ${end:-0}))
done
masked=$(kcat -b 127.0.0.1:$port -t bench.mask -C -e -q -c 1 -f '%s' 2>/dev/null)

# Interpreter vs JIT, one hook alone on one 10000-record batch.
head -n 10000 "$tmp/records.jsonl" | awk '{ gsub(/"/, "\\\""); print "{\"value\":\"" $0 "\"}" }' > "$tmp/lines.jsonl"
micro() { # script options jit -> records/s
	local line
	line=$("$SKALD" hook-test "$1" --options "$2" --repeat 20 $3 \
		--timeout-ms 60000 < "$tmp/lines.jsonl" 2>&1 >/dev/null | tail -1)
	echo "$line" | awk '{ printf "%.0f", $1 / $4 }'
}

{
	echo "# Lua hook benchmark"
	echo
	echo "Written by \`bench/hooks_bench.sh $N $REPEATS\` on $(date -u '+%Y-%m-%d %H:%M') UTC at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- core scripts 2>/dev/null || echo ' with uncommitted changes to core/ and scripts/'), binary $SKALD; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "## Produce throughput, 100-byte JSON records"
	echo
	echo "kcat (librdkafka), acks=1, linger.ms=5, one producer, 2 partitions per topic, 2 hook workers, hooks in the interpreter (JIT off). $N records per run, $REPEATS repeats; min / median / max. The CPU columns (medians) are the broker's CPU time for a run (all threads, /proc/PID/task/*/schedstat) per record, and its excess over the no-hook run of the same repeat: what the hooks cost in CPU, which other load on the machine barely moves, unlike records/s."
	echo
	echo "| case | records/s | cost vs no hook | target | broker CPU ns/record | hook CPU ns/record |"
	echo "|---|---|---|---|---|---|"
	for c in $cases; do
		rates="" ratios="" cpus="" extra=""
		for r in $(seq "$REPEATS"); do
			rates="$rates $(awk -v n="$N" -v s="${secs[$c,$r]}" 'BEGIN { printf "%.0f", n / s }')"
			ratios="$ratios $(awk -v a="${secs[none,$r]}" -v b="${secs[$c,$r]}" 'BEGIN { printf "%.3f", 1 - a / b }')"
			cpus="$cpus $(awk -v n="$N" -v c="${cpu[$c,$r]}" 'BEGIN { printf "%.0f", c / n }')"
			extra="$extra $(awk -v n="$N" -v a="${cpu[none,$r]}" -v c="${cpu[$c,$r]}" 'BEGIN { printf "%.0f", (c - a) / n }')"
		done
		med() { echo $1 | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { printf "%s", v[int((NR + 1) / 2)] }'; }
		stat() { echo $1 | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { printf "%s / **%s** / %s", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
		case $c in
		none) target="-" ;;
		filter|batch) target="≤ 15%" ;;
		mask) target="≤ 50%" ;;
		esac
		name=$c
		[ $c = none ] && name="no hook"
		[ $c = filter ] && name="trivial on_record filter"
		[ $c = batch ] && name="the same filter as on_batch"
		[ $c = mask ] && name="JSON PII mask (mask_pii.lua)"
		if [ $c = none ]; then
			echo "| $name | $(stat "$rates") | - | - | $(med "$cpus") | - |"
		else
			pct=$(echo $ratios | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 * 100 } END { printf "%.0f%% / **%.0f%%** / %.0f%%", v[1], v[int((NR + 1) / 2)], v[NR] }')
			echo "| $name | $(stat "$rates") | $pct | $target | $(med "$cpus") | $(med "$extra") |"
		fi
	done
	echo
	echo "Records written to bench.mask: $count (expected $(( N * (REPEATS + 1) ))). The oldest one kept: \`$masked\`"
	echo
	echo "## One hook alone: interpreter (what runs) vs JIT"
	echo
	echo "\`skald hook-test --repeat 20\` over one batch of 10000 of the records above, the mean of the last 15 runs, records/s. With the JIT on, \`while true do end\` cannot be interrupted (tests/unit/test_hook.c probes it), so the broker runs hook states in the interpreter."
	echo
	echo "| hook | interpreter | JIT | JIT ÷ interpreter |"
	echo "|---|---|---|---|"
	for s in "drop_filter.lua|{\"pattern\":\"DEBUG\"}" "drop_filter_batch.lua|{\"pattern\":\"DEBUG\"}" "mask_pii.lua|{\"fields\":[\"card\",\"email\"]}"; do
		f=${s%%|*} o=${s#*|}
		i=$(micro "scripts/examples/$f" "$o" "")
		j=$(micro "scripts/examples/$f" "$o" "--jit")
		echo "| $f | $i | $j | $(awk -v a="$i" -v b="$j" 'BEGIN { printf "%.2f×", b / a }') |"
	done
} > "$tmp/out.md"
# Notes written by hand below the marker line are kept across runs.
MARK='<!-- notes: kept by bench/hooks_bench.sh -->'
if [ -f "$OUT" ] && grep -qxF "$MARK" "$OUT"; then
	{ echo; awk -v m="$MARK" 'f || $0 == m { f = 1; print }' "$OUT"; } \
		>> "$tmp/out.md"
fi
mv "$tmp/out.md" "$OUT"
cat "$OUT"
