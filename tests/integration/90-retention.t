#!/usr/bin/python3
# Retention and DeleteRecords: time (retention.ms) and size
# (retention.bytes) retention delete whole closed segments and move the
# log start offset, which ListOffsets (get_watermark_offsets), Fetch and
# consumers reflect; a fetch below it is OFFSET_OUT_OF_RANGE, handled by
# auto.offset.reset. DeleteRecords (API 21, crafted by hand: neither
# confluent-kafka 1.7 nor kafka-python 2.0 has it) moves the start on
# request, and the start survives a restart.
#
# Every topic has segment.bytes=1024, so a few hundred records make many
# segments; the broker checks retention every 200 ms. Which segments must
# go is decided from the segment files in the data directory, and every
# wait is a poll with a deadline.
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import (Consumer, KafkaError, TopicPartition,  # noqa: E402
                             OFFSET_BEGINNING)
from confluent_kafka.admin import (AdminClient, ConfigResource,  # noqa: E402
                                   NewTopic)

CHECK_MS = 200
b = Broker(args=["--set", "log.retention.check.interval.ms=%d" % CHECK_MS])
BS = b.bootstrap
# Quiet: the clients outlive a restart, and resets are expected.
admin = AdminClient({"bootstrap.servers": BS, "log_level": 0})
SEG = {"segment.bytes": "1024"}
HOUR_MS = 3600 * 1000

UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_OUT_OF_RANGE = 1
POLICY_VIOLATION = 44


def create(topic, parts=1, **configs):
    c = dict(SEG)
    c.update(configs)
    r = admin_result(admin.create_topics([NewTopic(topic, parts, 1,
                                                   config=c)]))
    return ok(r[topic] is None, "create %s %s" % (topic, c))


def alter(topic, **configs):
    c = dict(SEG)
    c.update(configs)
    r = admin_result(admin.alter_configs([ConfigResource(
        "topic", topic, set_config=c)]))
    return ok(all(v is None for v in r.values()),
              "alter %s: %s" % (topic, configs))


_cons = None


def watermarks(topic, p=0):
    global _cons
    if _cons is None:
        _cons = Consumer({"bootstrap.servers": BS, "group.id": "skald-test",
                          "enable.auto.commit": False, "log_level": 0})
    return _cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                       cached=False)


def segments(topic, p=0):
    """[(base offset, size)] of the partition's segment files, sorted."""
    d = os.path.join(b.data_dir, "%s-%d" % (topic, p))
    out = []
    for name in os.listdir(d):
        if len(name) == 24 and name.endswith(".log"):
            try:
                out.append((int(name[:20]),
                            os.path.getsize(os.path.join(d, name))))
            except FileNotFoundError:  # deleted meanwhile
                pass
    return sorted(out)


def produce_all(topic, recs):
    # Small batches, so that a segment holds a few of them: a batch
    # larger than segment.bytes would make a segment of its own.
    res = produce(BS, topic, recs, conf={"acks": "all",
                                         "batch.num.messages": 4})
    return sum(1 for r in res if r and r[0] is None)


def offsets_read(topic, p=0, offsets=None, conf=None):
    """Offsets consumed from the beginning (or offsets) to the end."""
    return [m.offset() for m in consume(BS, topic, [p], offsets=offsets,
                                        conf=conf, timeout=20)]


def reset_error(topic, offset, p=0, timeout=15):
    """Fetch from offset with auto.offset.reset=error: the error seen."""
    c = Consumer({"bootstrap.servers": BS, "group.id": "skald-test",
                  "enable.auto.commit": False,
                  "auto.offset.reset": "error", "log_level": 0})
    try:
        c.assign([TopicPartition(topic, p, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                return m.error()
            return "message at offset %d" % m.offset()
        return None
    finally:
        c.close()


# ------------------------------------------------------------ time
T = "ret-time"
create(T, **{"retention.ms": "-1"})
now = int(time.time() * 1000)
old = [{"value": b"o" * 100, "key": b"old-%03d" % i,
        "timestamp": now - HOUR_MS} for i in range(100)]
young = [{"value": b"y" * 100, "key": b"young-%03d" % i, "timestamp": now}
         for i in range(100)]
is_(produce_all(T, old), 100, "100 records an hour old acknowledged")
is_(produce_all(T, young), 100, "100 records of now acknowledged")
n_segs = len(segments(T))
ok(n_segs >= 10, "segment.bytes=1024 rolled %d segments" % n_segs)

time.sleep(5 * CHECK_MS / 1000.0)
is_((watermarks(T), len(segments(T))), ((0, 200), n_segs),
    "retention.ms=-1: nothing deleted after several checks")

alter(T, **{"retention.ms": str(10 * 60 * 1000)})
ok(wait_until(lambda: watermarks(T)[0] > 0, timeout=15),
   "retention.ms=10min: the log start offset moves up")
# The files go on the broker's disk thread, just after.
wait_until(lambda: segments(T)[0][0] == watermarks(T)[0], timeout=15)
segs = segments(T)
start = segs[0][0]
is_(watermarks(T), (start, 200),
    "earliest offset = first remaining segment's base (%d), latest 200" %
    start)
ok(start <= 100, "no record younger than retention.ms went (start %d)"
   % start)
ok(len(segs) == 1 or segs[1][0] > 100,
   "every segment holding only old records went: the first left holds "
   "a young one (next segment at %s)" %
   (segs[1][0] if len(segs) > 1 else "-"))
time.sleep(3 * CHECK_MS / 1000.0)
is_(segments(T)[0][0], start, "and nothing more goes on later checks")
ok("retention: topic %s partition 0: deleted" % T in b.log(),
   "the broker logged what retention deleted")

got = offsets_read(T)
is_(got, list(range(start, 200)),
    "consuming from the beginning starts at the new start offset")
got = offsets_read(T, offsets={0: 0}, conf={"auto.offset.reset": "earliest",
                                            "log_level": 0})
is_(got, list(range(start, 200)),
    "a fetch at offset 0 (below the start) is reset to the earliest")
e = reset_error(T, 0)
ok(isinstance(e, KafkaError) and e.code() == KafkaError._AUTO_OFFSET_RESET
   and "out of range" in e.str().lower(),
   "with auto.offset.reset=error the fetch fails: offset out of range "
   "(%s)" % (e.str() if isinstance(e, KafkaError) else e))
e = reset_error(T, start)
is_(e, "message at offset %d" % start, "a fetch at the start is served")

# Time passing: the young records (all stamped `now`) expire together
# once retention.ms is behind them: 2 s from here. Polled every 50 ms,
# the start must not move before then, and must move soon after.
ret_ms = int(time.time() * 1000) - now + 2000
expiry = now + ret_ms
alter(T, **{"retention.ms": str(ret_ms)})
last_base = segments(T)[-1][0]
seen = None  # (wall ms after the query that first saw the new start, start)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    low = watermarks(T)[0]
    if low != start:
        seen = (int(time.time() * 1000), low)
        break
    time.sleep(0.05)
ok(seen is not None and seen[0] >= expiry,
   "retention.ms=%d: the young records stay until they are that old "
   "(seen gone %s ms after)" %
   (ret_ms, seen[0] - expiry if seen else "never"))
ok(wait_until(lambda: watermarks(T)[0] == last_base, timeout=10),
   "then every closed segment is gone; the active one stays (start %d, "
   "active segment %d)" % (watermarks(T)[0], last_base))
is_(offsets_read(T), list(range(last_base, 200)),
    "consuming reads what the active segment holds")

# ------------------------------------------------------------ size
S = "ret-size"
create(S)
recs = [{"value": b"s" * 100, "key": b"size-%03d" % i} for i in range(300)]
is_(produce_all(S, recs), 300, "300 records acknowledged")
total = sum(sz for _, sz in segments(S))
ok(total > 20000, "%d bytes in %d segments" % (total, len(segments(S))))
is_(watermarks(S), (0, 300), "nothing deleted with retention.bytes=-1")

LIMIT = 4096
alter(S, **{"retention.bytes": str(LIMIT)})


def size_settled():
    s = segments(S)
    t = sum(sz for _, sz in s)
    return t - s[0][1] < LIMIT and len(s) > 1


ok(wait_until(size_settled, timeout=15),
   "retention.bytes=%d: the oldest segments are deleted" % LIMIT)
segs = segments(S)
size = sum(sz for _, sz in segs)
ok(size >= LIMIT, "what is left (%d bytes) is at least retention.bytes, "
   "and without its oldest segment it would be less" % size)
start = segs[0][0]
is_(watermarks(S), (start, 300), "earliest offset %d, latest 300" % start)
is_(offsets_read(S), list(range(start, 300)),
    "consuming from the beginning reads exactly what is left")

# ------------------------------------------------------------ DeleteRecords


def delete_records(version, topics, timeout_ms=5000):
    """topics: [(name, [(partition, offset)])] -> {(name, p): (low, err)}"""
    body = struct.pack(">i", len(topics))
    for name, parts in topics:
        n = name.encode()
        body += struct.pack(">h", len(n)) + n + struct.pack(">i", len(parts))
        for p, off in parts:
            body += struct.pack(">iq", p, off)
    body += struct.pack(">i", timeout_ms)
    with socket.create_connection((b.host, b.port), 10) as s:
        s.sendall(kreq(21, version, 77, body))
        f = recv_frame(s, 10)
    corr, throttle, nt = struct.unpack_from(">iii", f, 0)
    off = 12
    out = {}
    for _ in range(nt):
        (ln,) = struct.unpack_from(">h", f, off)
        name = f[off + 2:off + 2 + ln].decode()
        off += 2 + ln
        (np_,) = struct.unpack_from(">i", f, off)
        off += 4
        for _ in range(np_):
            p, low, err = struct.unpack_from(">iqh", f, off)
            off += 14
            out[(name, p)] = (low, err)
    ok(corr == 77 and throttle == 0 and off == len(f),
       "DeleteRecords v%d response parses to its end" % version)
    return out


import socket  # noqa: E402

c, err, keys = api_versions(b.host, b.port)
is_(keys.get(21), (0, 1), "ApiVersions advertises DeleteRecords v0-1")

D = "ret-delete"
create(D, 2)
is_(produce_all(D, [{"value": b"d%d" % i, "key": b"%d" % i, "partition": 0}
                    for i in range(100)] +
                [{"value": b"e%d" % i, "partition": 1} for i in range(50)]),
    150, "100 records to partition 0, 50 to partition 1")
n0 = len(segments(D, 0))
r = delete_records(1, [(D, [(0, 37), (1, -1), (7, 5)]),
                       ("no-such-topic", [(0, 5)])])
is_(r, {(D, 0): (37, 0), (D, 1): (50, 0), (D, 7): (-1, 3),
        ("no-such-topic", 0): (-1, UNKNOWN_TOPIC_OR_PARTITION)},
    "offset 37 and -1 (the high watermark) answer the new low watermark; "
    "unknown partitions and topics UNKNOWN_TOPIC_OR_PARTITION")
is_((watermarks(D, 0), watermarks(D, 1)), ((37, 100), (50, 50)),
    "get_watermark_offsets shows the new starts")
wait_until(lambda: len(segments(D, 1)) == 1 and
           (len(segments(D, 0)) < 2 or segments(D, 0)[1][0] > 37),
           timeout=15)
ok(len(segments(D, 0)) < n0,
   "partition 0 lost the segments below 37 (%d -> %d)" %
   (n0, len(segments(D, 0))))
is_(segments(D, 1), [(50, 0)],
    "partition 1 deleted to its end keeps one empty segment")
is_(offsets_read(D, 0), list(range(37, 100)),
    "partition 0 is consumed from 37, the start inside a segment")
is_(offsets_read(D, 1), [], "partition 1 has nothing left to consume")
e = reset_error(D, 36)
ok(isinstance(e, KafkaError) and e.code() == KafkaError._AUTO_OFFSET_RESET,
   "a fetch at 36 is out of range")

r = delete_records(0, [(D, [(0, 101), (0, 10), (1, -2)])])
is_(r, {(D, 0): (37, 0), (D, 1): (-1, OFFSET_OUT_OF_RANGE)},
    "v0: below the start changes nothing and answers the start; -2 is "
    "out of range")
r = delete_records(1, [(D, [(0, 101)])])
is_(r, {(D, 0): (-1, OFFSET_OUT_OF_RANGE)},
    "past the high watermark: OFFSET_OUT_OF_RANGE")
is_(watermarks(D, 0), (37, 100), "and the start stayed at 37")

# One request for many partitions: each deletion in flight is linked into
# its partition, so the request must not move them (more than 8 once
# broke that).
W = "ret-wide"
create(W, 12)
produce_all(W, [{"value": b"w", "partition": p} for p in range(12)
                for _ in range(5)])
r = delete_records(1, [(W, [(p, 3) for p in range(12)])])
is_(r, {(W, p): (3, 0) for p in range(12)},
    "12 partitions in one DeleteRecords all answer their new start")
is_([watermarks(W, p) for p in range(12)], [(3, 5)] * 12,
    "and all of them start at 3")

create("ret-compact", **{"cleanup.policy": "compact"})
r = delete_records(1, [("ret-compact", [(0, 0)])])
is_(r, {("ret-compact", 0): (-1, POLICY_VIOLATION)},
    "a compact-only topic: POLICY_VIOLATION")

b.restart()
is_((watermarks(D, 0), watermarks(D, 1)), ((37, 100), (50, 50)),
    "the starts survive a restart")
is_(offsets_read(D, 0), list(range(37, 100)),
    "partition 0 is still consumed from 37")
res = produce(BS, D, [{"value": b"after", "partition": 1}],
              conf={"acks": "all"})
is_([r[2] for r in res if r and r[0] is None], [50],
    "appends to the emptied partition continue at offset 50")
is_(offsets_read(D, 1), [50], "and are consumed")
is_(watermarks(T)[0], segments(T)[0][0],
    "a retention start needs no checkpoint: still the first segment")

_cons.close()
b.stop()
done()
