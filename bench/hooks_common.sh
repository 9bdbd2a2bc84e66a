# Shared by hooks_bench.sh and hooks_ab.sh (sourced, from the repository
# root): the records and the broker configuration they run on.

# hooks_records N FILE: N 100-byte JSON values, one per line.
hooks_records() {
	awk -v n="$1" 'BEGIN {
		for (i = 0; i < n; i++) {
			s = sprintf("{\"card\":\"4111111111%06d\",\"email\":\"u%d@example.com\",\"n\":%d,\"pad\":\"", i, i % 1000, i)
			while (length(s) < 98) s = s "x"
			print s "\"}"
		}
	}' > "$2"
}

# hooks_free_port: a TCP port free on 127.0.0.1 just now.
hooks_free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# hooks_yaml PORT DATA_DIR [MASK_SCRIPT] [WORKERS]: the broker's
# configuration, one topic per case: no hook, the on_record filter, the
# same as on_batch, the JSON mask; WORKERS hook workers (default 2).
hooks_yaml() {
	cat <<YAML
listeners: 127.0.0.1:$1
admin.listener: ""
log.dir: $2
# Keep the logs small: deleted before the kernel writes them back, so
# that disk writeback does not compete with the runs for the 2 cores.
log.segment.bytes: 16777216
log.retention.bytes: 67108864
log.retention.check.interval.ms: 1000
hooks:
  timeout.ms: 1000
  memory.mb: 64
  workers: ${4:-2}
topics:
  bench.none:
    partitions: 2
  bench.filter:
    partitions: 2
    hooks:
      - name: filter
        script: scripts/examples/drop_filter.lua
        options: { pattern: DEBUG }
  bench.batch:
    partitions: 2
    hooks:
      - name: filter
        script: scripts/examples/drop_filter_batch.lua
        options: { pattern: DEBUG }
  bench.mask:
    partitions: 2
    hooks:
      - name: mask
        script: ${3:-scripts/examples/mask_pii.lua}
        options: { fields: [card, email] }
YAML
}
