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
# delivery, in two layouts, each with its own broker and a hook worker per
# core it has: "split", kcat on CPU 0 and the broker on the others
# (taskset), as a producer on another host would be; "shared", both
# anywhere, so that kcat competes with the hooks for the same cores.
# Ratios are taken within a repeat and layout; the table shows min /
# median / max. Then `skald hook-test --repeat` times each hook alone on
# one 10000-record batch, with the JIT off (what the broker runs) and on.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-200000}
REPEATS=${2:-3}
OUT=${OUT:-bench/RESULTS-hooks.md}
SKALD=${SKALD:-build/skald}
[ -x "$SKALD" ] || { echo "build $SKALD first (make build/skald)" >&2; exit 1; }
command -v kcat >/dev/null || { echo "kcat is needed" >&2; exit 1; }
ncpu=$(nproc)
layouts="shared"
if [ "$ncpu" -ge 2 ]; then
	layouts="split shared"
fi

tmp=$(mktemp -d /tmp/skald-hooks-bench.XXXXXX)
declare -A port pid
cleanup() {
	for p in "${pid[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

. bench/hooks_common.sh
hooks_records "$N" "$tmp/records.jsonl"

# One broker per layout, on the layout's cores, with a hook worker per
# core; the other one is idle meanwhile.
declare -A broker_cpus client_cpus
broker_cpus[shared]=0-$((ncpu - 1)) client_cpus[shared]=0-$((ncpu - 1))
broker_cpus[split]=1-$((ncpu - 1)) client_cpus[split]=0
start() { # layout workers
	port[$1]=$(hooks_free_port)
	hooks_yaml "${port[$1]}" "$tmp/data-$1" "" "$2" > "$tmp/$1.yaml"
	taskset -c "${broker_cpus[$1]}" "$SKALD" -c "$tmp/$1.yaml" 2> "$tmp/$1.log" &
	pid[$1]=$!
	for _ in $(seq 50); do
		kcat -b 127.0.0.1:${port[$1]} -L >/dev/null 2>&1 && return
		sleep 0.1
	done
}
start shared "$ncpu"
[ "$layouts" = shared ] || start split $((ncpu - 1))

# CPU time of every thread of broker $1 so far, ns
# (/proc/PID/task/*/schedstat): unlike throughput, barely moved by other
# load on the machine.
cpu_ns() {
	cat /proc/${pid[$1]}/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}

# "SECONDS CPU_NS": producing every record to topic $2 of layout $1's
# broker (kcat waits for delivery), and the broker's CPU time for it.
produce() {
	local t0 t1 c0 c1
	c0=$(cpu_ns $1)
	t0=$(date +%s.%N)
	taskset -c "${client_cpus[$1]}" kcat -b 127.0.0.1:${port[$1]} -t "$2" \
		-P -X acks=1 -X linger.ms=5 -X batch.num.messages=10000 \
		-X queue.buffering.max.messages=1000000 < "$tmp/records.jsonl"
	t1=$(date +%s.%N)
	c1=$(cpu_ns $1)
	echo "$t0 $t1 $c0 $c1" | awk '{ printf "%.3f %.0f\n", $2 - $1, $4 - $3 }'
}

cases="none filter batch mask"
for l in $layouts; do   # warm up, create
	for c in $cases; do produce $l bench.$c > /dev/null; done
done
declare -A secs cpu
for r in $(seq "$REPEATS"); do
	# Rotate the order so no case always runs first.
	arr=($cases)
	k=$(( (r - 1) % ${#arr[@]} ))
	order="${arr[*]:k} ${arr[*]:0:k}"
	for l in $layouts; do
		for c in $order; do
			read -r secs[$l,$c,$r] cpu[$l,$c,$r] < <(produce $l bench.$c)
		done
	done
done
# Every record must have arrived (nothing dropped or rejected).
# Records written: the partitions' end offsets (retention has deleted
# the oldest by now).
count=0
for l in $layouts; do
	for p in 0 1; do
		end=$(kcat -b 127.0.0.1:${port[$l]} -Q -t "bench.mask:$p:-1" 2>/dev/null |
			awk '/offset/ { print $NF }')
		count=$((count + ${end:-0}))
	done
done
masked=$(kcat -b 127.0.0.1:${port[shared]} -t bench.mask -C -e -q -c 1 -f '%s' 2>/dev/null)

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
	echo "kcat (librdkafka), acks=1, linger.ms=5, one producer, 2 partitions per topic, hooks in the interpreter (JIT off). $N records per run, $REPEATS repeats; min / median / max. Two layouts in every repeat, each with its own broker and a hook worker per core it has: **split**, kcat on CPU 0 and the broker on the other $((ncpu - 1)) (taskset), as a producer on another host; **shared**, both on all $ncpu cores, where kcat (~1 µs of CPU per record itself) competes with the hooks for the same cores. The CPU columns (medians, split layout) are the broker's CPU time for a run (all threads, /proc/PID/task/*/schedstat) per record, and its excess over the no-hook run of the same repeat: what the hooks cost in CPU, which other load on the machine barely moves, unlike records/s."
	echo
	echo "| case | target | split: records/s | split: cost vs no hook | shared: records/s | shared: cost vs no hook | broker CPU ns/record | hook CPU ns/record |"
	echo "|---|---|---|---|---|---|---|---|"
	med() { echo $1 | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { printf "%s", v[int((NR + 1) / 2)] }'; }
	stat() { echo $1 | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { printf "%s / **%s** / %s", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
	pcts() { echo $1 | tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 * 100 } END { printf "%.0f%% / **%.0f%%** / %.0f%%", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
	cl=${layouts%% *} # the CPU columns' layout
	for c in $cases; do
		case $c in
		none) target="-" name="no hook" ;;
		filter) target="≤ 15%" name="trivial on_record filter" ;;
		batch) target="≤ 15%" name="the same filter as on_batch" ;;
		mask) target="≤ 50%" name="JSON PII mask (mask_pii.lua)" ;;
		esac
		row="| $name | $target"
		for l in split shared; do
			if [[ " $layouts " != *" $l "* ]]; then
				row="$row | - | -"
				continue
			fi
			rates="" ratios=""
			for r in $(seq "$REPEATS"); do
				rates="$rates $(awk -v n="$N" -v s="${secs[$l,$c,$r]}" 'BEGIN { printf "%.0f", n / s }')"
				ratios="$ratios $(awk -v a="${secs[$l,none,$r]}" -v b="${secs[$l,$c,$r]}" 'BEGIN { printf "%.3f", 1 - a / b }')"
			done
			if [ $c = none ]; then
				row="$row | $(stat "$rates") | -"
			else
				row="$row | $(stat "$rates") | $(pcts "$ratios")"
			fi
		done
		cpus="" extra=""
		for r in $(seq "$REPEATS"); do
			cpus="$cpus $(awk -v n="$N" -v c="${cpu[$cl,$c,$r]}" 'BEGIN { printf "%.0f", c / n }')"
			extra="$extra $(awk -v n="$N" -v a="${cpu[$cl,none,$r]}" -v c="${cpu[$cl,$c,$r]}" 'BEGIN { printf "%.0f", (c - a) / n }')"
		done
		if [ $c = none ]; then
			echo "$row | $(med "$cpus") | - |"
		else
			echo "$row | $(med "$cpus") | $(med "$extra") |"
		fi
	done
	echo
	echo "Records written to bench.mask: $count (expected $(( N * (REPEATS + 1) * $(echo $layouts | wc -w) ))). The oldest one kept: \`$masked\`"
	echo
	echo "## One hook alone: interpreter (what runs) vs JIT"
	echo
	echo "\`skald hook-test --repeat 20\` over one batch of 10000 of the records above, the mean of the last 15 runs, records/s. With the JIT on, \`while true do end\` cannot be interrupted (tests/unit/test_hook.c probes it), and this LuaJIT (Debian's 2022-03 snapshot) does not handle an allocation refused inside a compiled trace, which is how \`memory.mb\` is enforced; so the broker runs hook states in the interpreter."
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
