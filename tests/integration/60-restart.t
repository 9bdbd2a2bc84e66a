#!/usr/bin/python3
# Persistence: records, offsets, topics and topic configs survive a clean
# stop (SIGTERM) and a SIGKILL (admin changes included, killed right after
# their answers); offsets continue after a restart.
import os
import random
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import (AdminClient, ConfigResource,  # noqa: E402
                                   NewPartitions, NewTopic)

rng = random.Random(60)
b = Broker()
BS = b.bootstrap
N = 5000
TOPIC = "restart"


def admin():
    # Module-level, so the client outlives the futures it returns.
    global _admin
    _admin = AdminClient({"bootstrap.servers": BS, "log_level": 3})
    return _admin


def read_all(topic, parts, counts):
    """{partition: [(offset, key, value, headers)]}, expecting counts."""
    got = consume(BS, topic, parts, sum(counts.values()), timeout=40)
    out = {p: [] for p in parts}
    for m in got:
        out[m.partition()].append((m.offset(), m.key(), m.value(),
                                   m.headers()))
    return out


fs = admin().create_topics([NewTopic(TOPIC, 3, 1, config={
    "retention.ms": "7200000", "segment.bytes": "65536"})])
fs[TOPIC].result(15)
diag("segment.bytes=65536 so the log rolls many segments")

recs = [{"key": b"r-%05d" % i,
         "value": rng.randbytes(rng.randrange(0, 1500)),
         "headers": [("i", b"%d" % i)]} for i in range(N)]
res = produce(BS, TOPIC, recs, conf={"acks": "all"})
is_(sum(1 for r in res if r and r[0] is None), N,
    "%d records acknowledged with acks=all" % N)
expect = {0: [], 1: [], 2: []}
for rec, r in zip(recs, res):
    if r and r[0] is None:
        expect[r[1]].append((r[2], rec["key"], rec["value"],
                             rec["headers"]))
for p in expect:
    expect[p].sort(key=lambda x: x[0])
ok(all(len(v) > 0 for v in expect.values()), "spread over 3 partitions")
ends = {p: len(v) for p, v in expect.items()}

# ------------------------------------------------------------ SIGTERM
b.stop(name="SIGTERM with data: exit 0")
b.start()
md = admin().list_topics(timeout=10)
t = md.topics.get(TOPIC)
is_(sorted(t.partitions) if t else None, [0, 1, 2],
    "after restart the topic still has 3 partitions")
got = read_all(TOPIC, [0, 1, 2], ends)
for p in (0, 1, 2):
    is_(len(got[p]), ends[p], "partition %d: all %d records back" %
        (p, ends[p]))
    ok(got[p] == expect[p], "partition %d: offsets, keys, values and "
       "headers byte-exact" % p)

res = admin().describe_configs([ConfigResource("topic", TOPIC)])
c = list(res.values())[0].result(10)
is_((c["retention.ms"].value, c["segment.bytes"].value),
    ("7200000", "65536"), "topic configs survived the restart")

# Offsets continue where they stopped.
more = [{"key": b"m-%d" % i, "value": b"after restart %d" % i,
         "partition": i % 3} for i in range(300)]
res = produce(BS, TOPIC, more, conf={"acks": "all"})
first = {}
for rec, r in zip(more, res):
    if r and r[0] is None:
        first.setdefault(r[1], r[2])
is_(first, ends, "new offsets start at the old end of each partition")
for rec, r in zip(more, res):
    if r and r[0] is None:
        expect[r[1]].append((r[2], rec["key"], rec["value"], None))
ends = {p: len(v) for p, v in expect.items()}
got = read_all(TOPIC, [0, 1, 2], ends)
ok(all([o for o, _, _, _ in got[p]] == list(range(ends[p]))
       for p in (0, 1, 2)), "offsets contiguous from 0 in every partition")
ok(got == expect, "old and new records all readable")

# ------------------------------------------------------------ under load
# Produce continuously and stop the broker mid-stream, first with SIGTERM
# (it must answer what is in flight and exit 0), then with SIGKILL: every
# record acknowledged with acks=all must be there after the restart.


def stream_and(stop, label, after=2000):
    """Produce bursts until `after` acks, call stop(), then return
    (acked {(partition, offset): (key, value)}, sent, failed)."""
    acked = {}
    failed = [0]

    def cb(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
        else:
            failed[0] += 1
    p = Producer({"bootstrap.servers": BS, "acks": "all", "linger.ms": 2,
                  "log_level": 0,  # quiet: connection refused is expected
                  "message.timeout.ms": 1500, "retries": 0})
    p.produce(TOPIC, b"warm-up", key=b"warm-up", on_delivery=cb)
    p.flush(10)   # connected, metadata known: the stream flows at once
    i = 0
    stopped = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for _ in range(200):  # bursts, so that some are in flight
            try:
                p.produce(TOPIC, b"%s-%d" % (label, i),
                          key=b"%s-%d" % (label, i), on_delivery=cb)
                i += 1
            except BufferError:
                break
        p.poll(0)  # sends the burst; acks come back in later polls
        if len(acked) >= after:
            stop()
            stopped = True
            break
        p.poll(0.005)
    # Records not acknowledged by now never will be (the broker is down):
    # they are not checked, so no need to wait for all of them to fail.
    p.flush(3)
    ok(stopped, "%s after %d acknowledged records (%d sent, %d failed)" %
       (label.decode(), len(acked), i, failed[0]))
    return dict(acked)


def check_acked(acked, label):
    b.start()
    stored = {}
    for m in consume(BS, TOPIC, [0, 1, 2], None, timeout=40):  # to the end
        stored[(m.partition(), m.offset())] = (m.key(), m.value())
    missing = [k for k, v in acked.items() if stored.get(k) != v]
    is_(len(missing), 0, "every acknowledged record is present after %s" %
        label)
    if missing:
        diag("first missing: %r" % (sorted(missing)[0],))
    ok(all(stored.get((pp, o)) == (k, v)
           for pp in expect for o, k, v, _ in expect[pp]),
       "and everything from before is intact")
    return stored


rc = []
acked = stream_and(lambda: (b.signal(signal.SIGTERM), rc.append(b.wait())),
                   b"SIGTERM")
is_(rc, [0], "SIGTERM under load: exit 0")
check_acked(acked, "SIGTERM")
acked = stream_and(b.kill, b"SIGKILL")
stored = check_acked(acked, "SIGKILL")

# ------------------------------------------------------------ metadata
# Admin answers come only once meta.db has the change on disk: SIGKILL
# right after them loses none (creation, new partitions, configs and a
# deletion).
a = admin()
for f in a.create_topics([NewTopic("kill-doomed", 1, 1)]).values():
    f.result(15)
fs = a.create_topics([NewTopic("kill-meta", 2, 1, config={
    "retention.ms": "3600000"})])
fs["kill-meta"].result(15)
fs = a.alter_configs([ConfigResource("topic", "kill-meta", set_config={
    "retention.ms": "1234567", "cleanup.policy": "compact"})])
list(fs.values())[0].result(15)
a.create_partitions([NewPartitions("kill-meta", 4)])["kill-meta"].result(15)
a.delete_topics(["kill-doomed"])["kill-doomed"].result(15)
b.kill()
b.start()
md = admin().list_topics(timeout=10)
t = md.topics.get("kill-meta")
is_(sorted(t.partitions) if t else None, [0, 1, 2, 3],
    "SIGKILL after the answers: the created topic has its 4 partitions")
ok("kill-doomed" not in md.topics, "and the deleted topic stays deleted")
res = admin().describe_configs([ConfigResource("topic", "kill-meta")])
c = list(res.values())[0].result(10)
is_((c["retention.ms"].value, c["cleanup.policy"].value),
    ("1234567", "compact"), "and the altered configs are there")

# ------------------------------------------------------------ torn tails
# Damage the tail segment of stopped topics the way a crash can, restart,
# and check what is served: never a damaged batch, all whole ones intact,
# and appends continue right after the last good batch.
DAMAGE = {
    "garbage-appended": (lambda p, n: _append(p, os.urandom(100)), 3),
    "zeros-appended": (lambda p, n: _append(p, b"\0" * 4096), 3),
    "last-batch-cut": (lambda p, n: os.truncate(p, n - 5), 2),
    # Synced (the clean stop's checkpoint vouches for it): damage, not a
    # torn tail; the partition refuses appends rather than cut it.
    "last-batch-bad-crc": (lambda p, n: _flip(p, n - 3), 2),
    "index-removed": (lambda p, n: (os.unlink(p[:-4] + ".index"),
                                    os.unlink(p[:-4] + ".timeindex")), 3),
    "index-garbage": (lambda p, n: (_write(p[:-4] + ".index",
                                           os.urandom(64)),
                                    _write(p[:-4] + ".timeindex",
                                           os.urandom(60))), 3),
}


def _append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        c = f.read(1)
        f.seek(off)
        f.write(bytes([c[0] ^ 0xFF]))


fs = admin().create_topics([NewTopic("torn-" + k, 1, 1) for k in DAMAGE])
for f in fs.values():
    f.result(15)
# Three batches of 10 per topic, made by hand so the batching is exact.
with socket.create_connection((b.host, b.port), 10) as s:
    for k in DAMAGE:
        for batch in range(3):
            s.sendall(kreq(0, 3, batch, produce_request(
                "torn-" + k, 0, record_batch(
                    [b"%d-%d" % (batch, i) for i in range(10)]))))
            r = parse_produce_response(recv_frame(s, 10))
            if r[0][2:] != (0, batch * 10):
                diag("hand-made produce to torn-%s: %r" % (k, r))
b.stop(name="SIGTERM before damaging segments: exit 0")
for k, (damage, _) in DAMAGE.items():
    d = os.path.join(b.data_dir, "torn-%s-0" % k)
    logs = sorted(f for f in os.listdir(d) if f.endswith(".log")) \
        if os.path.isdir(d) else []
    if not logs:
        diag("no segment found in %s: layout changed?" % d)
        continue
    path = os.path.join(d, logs[-1])
    damage(path, os.path.getsize(path))
b.start()
for k, (_, batches) in DAMAGE.items():
    want = [b"%d-%d" % (bt, i) for bt in range(batches) for i in range(10)]
    got = consume(BS, "torn-" + k, [0], None, timeout=15)
    is_([m.value() for m in got], want, "%s: %d whole batches served" %
        (k, batches))
    if k == "last-batch-bad-crc":
        res = produce(BS, "torn-" + k, [{"value": b"next", "partition": 0}],
                      conf={"retries": 0}, timeout=10)
        ok(res[0] and res[0][0] is not None and
           res[0][0].name() == "KAFKA_STORAGE_ERROR",
           "%s: the partition is damaged, appends are refused" % k)
        continue
    res = produce(BS, "torn-" + k, [{"value": b"next", "partition": 0}])
    is_(res[0][2] if res[0] else None, len(want),
        "%s: the next append gets offset %d" % (k, len(want)))

# ------------------------------------------------------------ many partitions
# More partitions than the soft open-file limit (Debian's default is 1024):
# the broker has to raise its limit or not hold every file open.
import resource  # noqa: E402
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if hard == resource.RLIM_INFINITY or hard >= 4096:
    fs = admin().create_topics([NewTopic("wide", 300, 1)])
    fs["wide"].result(30)
    b.stop(name="SIGTERM with 300 more partitions: exit 0")
    b.nofile = 256
    try:
        b.start()
        started = True
    except Exception as e:  # noqa: BLE001
        diag(str(e).splitlines()[-1][:300])
        started = False
    ok(started, "restarts with 300 partitions under a soft limit of 256 "
       "open files")
    if not started:
        b.nofile = None
        b.start()
else:
    skip("hard RLIMIT_NOFILE %d is too low to test" % hard)

# The log still accepts appends after recovery.
res = produce(BS, TOPIC, [{"value": b"post-recovery", "partition": 0}],
              conf={"acks": "all"})
ok(res[0] and res[0][0] is None and
   res[0][2] >= max(o for (pp, o) in stored if pp == 0) + 1,
   "appends continue after recovery")
b.stop()
done()
