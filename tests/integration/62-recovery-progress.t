#!/usr/bin/python3
# A long recovery logs its progress: after a SIGKILL with ~300 MB written
# since the last recovery checkpoint (in 32 MB segments), the restart
# scans all of it and says how far it got every 256 MB (at segment
# boundaries), then what it recovered.
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Producer  # noqa: E402

TOPIC = "big-tail"
b = Broker(config="""\
log.flush.offset.checkpoint.interval.ms: 3600000
topics:
  %s:
    partitions: 1
    configs: { segment.bytes: "33554432" }
""" % TOPIC)
N, SIZE = 1200, 256 * 1024

p = Producer({"bootstrap.servers": b.bootstrap, "acks": "1",
              "linger.ms": 5, "log_level": 3})
errors = []
value = bytes(range(256)) * (SIZE // 256)
for i in range(N):
    while True:
        try:
            p.produce(TOPIC, value, key=b"%d" % i,
                      on_delivery=lambda e, m: e and errors.append(e))
            break
        except BufferError:
            p.poll(0.1)
left = p.flush(60)
ok(left == 0 and not errors, "%d records of %d KB produced" %
   (N, SIZE // 1024))

b.kill()
b.start()
log = b.last_log()
m = re.search(r"partition \S+big-tail-0: recovery has scanned (\d+) MB "
              r"\((\d+) segments\), now at segment", log)
total = re.search(r"big-tail-0: recovered in \d+ ms from \S+ \S+: "
                  r"scanned (\d+) bytes", log)
ok(m and total and int(m.group(1)) >= 256 and
   int(m.group(1)) < int(total.group(1)) >> 20,
   "the recovery logs its progress past 256 MB, before its end (%s)" %
   (m and m.group(0)))
ok(re.search(r"partition \S+big-tail-0: recovered in \d+ ms", log),
   "and what it recovered")
got = consume(b.bootstrap, TOPIC, [0], offsets={0: N - 1}, count=1,
              timeout=30)
ok(len(got) == 1 and got[0].value() == value and got[0].key() == b"%d" % (N - 1),
   "the last record is there after recovery")
b.stop()
done()
