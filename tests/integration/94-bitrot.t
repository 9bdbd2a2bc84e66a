#!/usr/bin/python3
# Bit rot in a closed segment (issue 4): a byte flipped in the middle of an
# old segment whose index files are intact passes recovery (which trusts
# such a segment), and sendfile would serve it unchecked. The scrub
# (log.scrub.interval.ms, log.scrub.bytes.per.sec) reads it back, logs the
# file, position and offset, and marks the partition damaged: Fetch there
# answers KAFKA_STORAGE_ERROR and never the rotten batch, produce is
# refused, and the other partition carries on.
import glob
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import KafkaError, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka.client_async import KafkaClient  # noqa: E402
from kafka.protocol.fetch import FetchRequest  # noqa: E402

TOPIC = "bitrot"
STORAGE_ERROR = 56

b = Broker(args=["--set", "log.scrub.interval.ms=0"])
BS = b.bootstrap
_admin = AdminClient({"bootstrap.servers": BS, "log_level": 3})
_admin.create_topics([NewTopic(TOPIC, 2, 1, config={
    "segment.bytes": "16384"})])[TOPIC].result(15)

# Many small produce rounds: many batches, several segments per partition.
acked = 0
for rnd in range(30):
    res = produce(BS, TOPIC, [{"value": b"v%04d-" % (rnd * 20 + i) +
                               os.urandom(300), "partition": i % 2}
                              for i in range(20)],
                  conf={"acks": "all", "linger.ms": 0})
    acked += sum(1 for r in res if r and r[0] is None)
is_(acked, 600, "600 records acknowledged in 30 rounds")
b.stop(name="clean stop: index files and a clean recovery checkpoint")

pdir = os.path.join(b.data_dir, TOPIC + "-0")
logs = sorted(glob.glob(os.path.join(pdir, "*.log")))
ok(len(logs) >= 3, "partition 0 has %d segments" % len(logs))
victim = logs[0]
data = bytearray(open(victim, "rb").read())
starts, pos = [], 0
while pos + 12 <= len(data):
    starts.append(pos)
    pos += 12 + struct.unpack_from(">i", data, pos + 8)[0]
mid = starts[len(starts) // 2]
bad_offset = struct.unpack_from(">q", data, mid)[0]
data[mid + 61 + 20] ^= 0x5a    # inside the records: only the CRC can tell
with open(victim, "r+b") as f:
    f.write(data)
diag("flipped a byte of the batch at position %d (offset %d) of %s" %
     (mid, bad_offset, os.path.basename(victim)))

b.args = ["--set", "log.scrub.interval.ms=200",
          "--set", "log.scrub.bytes.per.sec=100000000"]
b.start()
ok(wait_until(lambda: "bit rot" in b.last_log(), 20),
   "the scrub reports the bit rot")
line = next((l for l in b.last_log().splitlines() if "bit rot" in l), "")
ok(victim in line and ("position %d " % mid) in line and
   ("offset %d)" % bad_offset) in line,
   "the log line names the file, position and offset: %s" % line[-200:])


def fetch(offsets):
    """One Fetch v4 by kafka-python: {partition: (error, hwm, bytes)}."""
    cli = KafkaClient(bootstrap_servers=BS, api_version=(2, 0, 0))
    try:
        node = cli.least_loaded_node()
        deadline = time.monotonic() + 10
        while not cli.ready(node) and time.monotonic() < deadline:
            cli.poll(timeout_ms=50)
        req = FetchRequest[4](-1, 100, 1, 1 << 20, 0, [
            (TOPIC, [(p, o, 1 << 20) for p, o in offsets.items()])])
        fut = cli.send(node, req)
        cli.poll(future=fut, timeout_ms=10000)
        out = {}
        for _topic, parts in fut.value.topics:
            for p in parts:
                out[p[0]] = (p[1], p[2], p[-1])
        return out
    finally:
        cli.close()


got = fetch({0: bad_offset, 1: 0})
is_(got[0][0], STORAGE_ERROR,
    "Fetch of partition 0 at the bad batch: KAFKA_STORAGE_ERROR")
ok(got[1][0] == 0 and len(got[1][2]) > 0,
   "the same Fetch serves partition 1")
got = fetch({0: 0})
raw = got[0][2]
ok(got[0][0] == 0 and len(raw) > 0 and bytes(data[:mid]).startswith(raw),
   "batches before the damage are served (%d bytes), and stop before it" %
   len(raw))

p = Producer({"bootstrap.servers": BS, "acks": "all", "retries": 0,
              "linger.ms": 0, "message.timeout.ms": 10000, "log_level": 3})
res = {}
for part in (0, 1):
    p.produce(TOPIC, b"after", partition=part,
              on_delivery=lambda err, msg, part=part: res.update(
                  {part: err}))
p.flush(15)
ok(res.get(0) is not None and
   res[0].code() == KafkaError.KAFKA_STORAGE_ERROR,
   "produce to the damaged partition: KAFKA_STORAGE_ERROR (%s)" %
   (res.get(0).name() if res.get(0) else res.get(0)))
ok(0 in res and res.get(1) is None, "produce to partition 1 works")
got = consume(BS, TOPIC, [1], 301, timeout=20)
is_(len(got), 301, "partition 1 reads back whole")
ok(b.alive(), "the broker stays up")
b.stop()
done()
