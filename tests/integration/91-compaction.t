#!/usr/bin/python3
# Compaction (cleanup.policy=compact) with real clients: after the cleaner
# ran, consuming from the beginning yields exactly the latest record of
# each key for the closed segments, and everything in the active one,
# at their original offsets (with gaps); tombstones stay until
# delete.retention.ms after the cleaning that first saw them, then go;
# min.cleanable.dirty.ratio, max.compaction.lag.ms and segment.ms decide
# when the cleaner runs; a record without a key is refused; compressed
# batches come back recompressed; kafka-python reads the gaps; a restart
# keeps all of it.
#
# The broker looks for work every 200 ms (log.cleaner.backoff.ms).
# Topics have segment.bytes=1024 so a few hundred records make many
# segments. What must remain is computed from the offsets the producer
# got back and the active segment's base (from the segment files); every
# wait is a poll with a deadline.
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import (AdminClient, ConfigResource,  # noqa: E402
                                   NewTopic)

BACKOFF_MS = 200
b = Broker(args=["--set", "log.cleaner.backoff.ms=%d" % BACKOFF_MS])
BS = b.bootstrap
admin = AdminClient({"bootstrap.servers": BS, "log_level": 0})
BASE = {"cleanup.policy": "compact", "segment.bytes": "1024",
        "min.cleanable.dirty.ratio": "0.01"}
INVALID_RECORD = 87


def topic_configs(**configs):
    c = dict(BASE)
    c.update({k.replace("_", "."): v for k, v in configs.items()})
    return c


def create(topic, **configs):
    c = topic_configs(**configs)
    r = admin_result(admin.create_topics([NewTopic(topic, 1, 1, config=c)]))
    return ok(r[topic] is None, "create %s %s" % (topic, c))


def alter(topic, **configs):
    c = topic_configs(**configs)
    r = admin_result(admin.alter_configs([ConfigResource(
        "topic", topic, set_config=c)]))
    return ok(all(v is None for v in r.values()),
              "alter %s: %s" % (topic, configs))


def pdir(topic):
    return os.path.join(b.data_dir, "%s-0" % topic)


def segments(topic):
    """Base offsets of the partition's segment files, sorted."""
    out = []
    for name in os.listdir(pdir(topic)):
        if len(name) == 24 and name.endswith(".log"):
            out.append(int(name[:20]))
    return sorted(out)


def leftovers(topic):
    return [n for n in os.listdir(pdir(topic))
            if n.endswith(".cleaned") or n.endswith(".swap")]


def send(topic, recs, conf=None):
    """recs: [(key, value)]; the model [(offset, key, value)]."""
    c = {"acks": "all", "batch.num.messages": 4}
    c.update(conf or {})
    res = produce(BS, topic, [{"key": k, "value": v} for k, v in recs],
                  conf=c)
    bad = [r for r in res if not r or r[0] is not None]
    if bad:
        diag("produce to %s: %d failed: %s" % (topic, len(bad), bad[:3]))
    return [(r[2], k, v) for r, (k, v) in zip(res, recs)]


def updates(prefix, nkeys, n, start=0):
    return [(b"%s-%d" % (prefix, i % nkeys),
             b"value %d of %s-%d" % (start + i, prefix, i % nkeys))
            for i in range(n)]


def expected(model, active, keep_tombstones=True):
    """Below the active segment the latest record of each key (its
    tombstone only while keep_tombstones); from it on, everything."""
    latest = {}
    for off, k, v in model:
        if off < active:
            latest[k] = off
    out = []
    for off, k, v in model:
        if off >= active:
            out.append((off, k, v))
        elif latest[k] == off and (v is not None or keep_tombstones):
            out.append((off, k, v))
    return out


def read(topic, conf=None):
    """(offset, key, value) from the beginning to the end, confluent."""
    return [(m.offset(), m.key(), m.value())
            for m in consume(BS, topic, [0], conf=conf, timeout=20)]


def cleanings(topic):
    return b.log().count("compaction: topic %s partition 0" % topic)


def wait_cleaned(topic, want, timeout=20):
    """Poll until reading the topic gives want."""
    got = [None]

    def check():
        got[0] = read(topic)
        return got[0] == want
    if wait_until(check, timeout=timeout, interval=0.2):
        return True
    diag("last read: %d records, want %d" % (len(got[0] or []), len(want)))
    return False


# ------------------------------------------------------------ basics
T = "cmp"
create(T)
model = send(T, updates(b"key", 10, 300))
segs = segments(T)
ok(len(segs) > 8, "300 updates of 10 keys made %d segments" % len(segs))
active = segs[-1]
want = expected(model, active)
ok(wait_cleaned(T, want),
   "consuming yields the latest record of each of the 10 keys below the "
   "active segment (%d), and all %d records in it" %
   (active, sum(1 for o, _, _ in model if o >= active)))
got = read(T)
offs = [o for o, _, _ in got]
ok(offs == sorted(set(offs)) and offs[-1] == 299 and len(offs) < 300,
   "at their original offsets, with gaps (%d records, last offset %d)" %
   (len(offs), offs[-1]))
ok(len(segments(T)) < len(segs),
   "closed segments merged: %d segment files, were %d" %
   (len(segments(T)), len(segs)))
is_(leftovers(T), [], "no .cleaned or .swap file left")
ok("compaction: topic cmp partition 0 (dirty ratio)" in b.log(),
   "the broker logged the cleaning")
n = cleanings(T)
time.sleep(5 * BACKOFF_MS / 1000.0)
is_(cleanings(T), n, "nothing dirty: no cleaning on later looks")

# kafka-python (its own fetcher, Fetch v4) over the same gaps.
from kafka import KafkaConsumer, TopicPartition as KTP  # noqa: E402


def read_kafka_python(topic):
    c = KafkaConsumer(bootstrap_servers=BS, enable_auto_commit=False,
                      auto_offset_reset="earliest", group_id=None)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        out = []
        deadline = time.monotonic() + 20
        while c.position(tp) < end and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                out += [(r.offset, r.key, r.value) for r in recs]
        return out
    finally:
        c.close()


is_(read_kafka_python(T), want,
    "kafka-python reads the compacted topic to its end, the same records")

# ------------------------------------------------------------ no key
res = produce(BS, T, [{"value": b"keyless"}], conf={"acks": "all"})
err = res[0][0] if res and res[0] else None
ok(err is not None and err.code() == INVALID_RECORD,
   "a record without a key is refused: INVALID_RECORD (%s)" % err)
more = send(T, [(b"key-0", b"after the refusal")])
ok(more[0][0] == 300, "a keyed record is still accepted, at offset 300")
model += more

# ------------------------------------------------------------ compressed
Z = "cmp-zstd"
create(Z)
zmodel = send(Z, updates(b"z", 7, 250), conf={"compression.type": "zstd",
                                              "batch.num.messages": 10})
ok(wait_cleaned(Z, expected(zmodel, segments(Z)[-1])),
   "zstd batches: compacted, recompressed, read back by librdkafka")
G = "cmp-gzip"
create(G)
gmodel = send(G, updates(b"g", 7, 250), conf={"compression.type": "gzip",
                                              "batch.num.messages": 10})
gwant = expected(gmodel, segments(G)[-1])
ok(wait_cleaned(G, gwant), "gzip batches: compacted and read back")
is_(read_kafka_python(G), gwant, "kafka-python reads the gzip ones too")

# ------------------------------------------------------------ tombstones
D = "cmp-tomb"
RET_MS = 4000
create(D, **{"delete.retention.ms": str(RET_MS)})
dmodel = send(D, updates(b"t", 5, 60))
dmodel += send(D, [(b"t-0", None), (b"t-1", None)])
dmodel += send(D, updates(b"filler", 5, 60))
active = segments(D)[-1]
tomb_offs = [o for o, k, v in dmodel if v is None]
ok(all(o < active for o in tomb_offs),
   "tombstones for t-0 and t-1 at offsets %s, in closed segments" %
   tomb_offs)
ok(wait_cleaned(D, expected(dmodel, active)),
   "first cleaning: older t-0 and t-1 records are gone, their tombstones "
   "stay")
seen = time.monotonic()
time.sleep(RET_MS / 2000.0)
is_([(o, k, v) for o, k, v in read(D) if v is None],
    [(o, k, v) for o, k, v in dmodel if v is None],
    "half of delete.retention.ms later the tombstones are still there")
ok(wait_cleaned(D, expected(dmodel, active, keep_tombstones=False),
                timeout=RET_MS / 1000.0 + 15),
   "then they go")
gone = time.monotonic() - seen
ok(gone >= RET_MS / 1000.0 - 1.0,
   "no earlier than delete.retention.ms after the first cleaning "
   "(%.1f s after it was seen)" % gone)
ok("(delete horizon)" in b.log(), "the cleaning was for the horizon")

# ------------------------------------------------------------ when
L = "cmp-lazy"
create(L, **{"min.cleanable.dirty.ratio": "1"})
lmodel = send(L, updates(b"l", 5, 150))
time.sleep(5 * BACKOFF_MS / 1000.0)
is_(len(read(L)), 150, "min.cleanable.dirty.ratio=1: never cleaned")
alter(L, **{"min.cleanable.dirty.ratio": "1",
            "max.compaction.lag.ms": "1"})
ok(wait_cleaned(L, expected(lmodel, segments(L)[-1])),
   "max.compaction.lag.ms passed: cleaned anyway")
ok("compaction: topic %s partition 0 (max.compaction.lag.ms)" % L
   in b.log(), "and logged why")

R = "cmp-roll"
create(R, **{"segment.bytes": "1048576", "segment.ms": "1500"})
rmodel = send(R, updates(b"r", 5, 50))
time.sleep(5 * BACKOFF_MS / 1000.0)
is_((len(segments(R)), len(read(R))), (1, 50),
    "one active segment: nothing cleaned")
time.sleep(1.6 - 5 * BACKOFF_MS / 1000.0)
rmodel += send(R, [(b"r-0", b"rolls the segment")])
is_(len(segments(R)), 2, "segment.ms passed: the next record rolls it")
ok(wait_cleaned(R, expected(rmodel, 50)),
   "and the closed segment is cleaned")

# ------------------------------------------------------------ restart
b.restart()
ok(wait_cleaned(T, expected(model, segments(T)[-1])),
   "after a restart: the same records")
log = b.last_log()
ok("corrupt" not in log and "torn tail" not in log and
   "overlaps" not in log,
   "recovery takes the compacted segments, gaps and all, as they are")
model += send(T, updates(b"key", 10, 100, start=1000))
ok(wait_cleaned(T, expected(model, segments(T)[-1])),
   "new updates after the restart are compacted too")
is_(leftovers(T), [], "no .cleaned or .swap file left")
b.stop()
done()
