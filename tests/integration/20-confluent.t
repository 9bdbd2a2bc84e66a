#!/usr/bin/python3
# python3-confluent-kafka (librdkafka 2.0.2) against skald: AdminClient
# topics, partitions and configs; headers and timestamps; every codec;
# a 900 KB record and an over-limit one; acks 0/1/-1; ListOffsets.
import subprocess
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import (Consumer, KafkaError, Producer,  # noqa: E402
                             TopicPartition, TIMESTAMP_CREATE_TIME,
                             TIMESTAMP_LOG_APPEND_TIME)
from confluent_kafka.admin import (AdminClient, ConfigResource,  # noqa: E402
                                   NewPartitions, NewTopic)

rng = random.Random(7)
b = Broker()
BS = b.bootstrap
admin = AdminClient({"bootstrap.servers": BS})


def err_code(res):
    """Kafka error code of an admin result (0 for success)."""
    if isinstance(res, Exception):
        e = res.args[0] if res.args else None
        return e.code() if isinstance(e, KafkaError) else repr(res)
    return 0


def partitions_of(topic):
    md = admin.list_topics(timeout=10)
    t = md.topics.get(topic)
    return None if t is None else sorted(t.partitions)


def configs_of(topic):
    res = admin_result(admin.describe_configs(
        [ConfigResource("topic", topic)]))
    (v,) = res.values()
    return v


# ------------------------------------------------------------ admin: topics
r = admin_result(admin.create_topics([NewTopic("ck-admin", 3, 1)]))
is_(err_code(r["ck-admin"]), 0, "create_topics ck-admin with 3 partitions")
is_(partitions_of("ck-admin"), [0, 1, 2], "list_topics shows 3 partitions")
md = admin.list_topics(timeout=10)
ok(len(md.brokers) == 1 and md.controller_id in md.brokers,
   "one broker, and it is the controller")
bid = list(md.brokers)[0]
ok(all(p.leader == bid and p.error is None
       for p in md.topics["ck-admin"].partitions.values()),
   "every partition is led by it, no errors")

r = admin_result(admin.create_topics([NewTopic("ck-admin", 3, 1)]))
is_(err_code(r["ck-admin"]), KafkaError.TOPIC_ALREADY_EXISTS,
    "creating it again: TOPIC_ALREADY_EXISTS")
r = admin_result(admin.create_topics([NewTopic("bad/name", 1, 1)]))
is_(err_code(r["bad/name"]), KafkaError.TOPIC_EXCEPTION,
    "an illegal name: INVALID_TOPIC_EXCEPTION")
r = admin_result(admin.create_topics([NewTopic("x" * 250, 1, 1)]))
is_(err_code(r["x" * 250]), KafkaError.TOPIC_EXCEPTION,
    "a 250-character name: INVALID_TOPIC_EXCEPTION")
r = admin_result(admin.create_topics([NewTopic("ck-validate", 2, 1)],
                                     validate_only=True))
is_(err_code(r["ck-validate"]), 0, "validate_only create succeeds")
is_(partitions_of("ck-validate"), None, "but creates nothing")

r = admin_result(admin.create_partitions([NewPartitions("ck-admin", 5)]))
is_(err_code(r["ck-admin"]), 0, "create_partitions to 5")
is_(partitions_of("ck-admin"), [0, 1, 2, 3, 4], "list_topics shows 5")
r = admin_result(admin.create_partitions([NewPartitions("ck-admin", 2)]))
is_(err_code(r["ck-admin"]), KafkaError.INVALID_PARTITIONS,
    "shrinking to 2: INVALID_PARTITIONS")

# ------------------------------------------------------------ admin: configs
c = configs_of("ck-admin")
ok(isinstance(c, dict), "describe_configs on a topic")
c = c if isinstance(c, dict) else {}
for k in ("retention.ms", "segment.bytes", "max.message.bytes",
          "cleanup.policy", "message.timestamp.type"):
    ok(k in c, "describe_configs lists %s" % k)
is_(c["cleanup.policy"].value if "cleanup.policy" in c else None, "delete",
    "cleanup.policy defaults to delete")

r = admin_result(admin.alter_configs([ConfigResource(
    "topic", "ck-admin", set_config={"retention.ms": "3600000"})]))
is_([err_code(v) for v in r.values()], [0], "alter_configs retention.ms")
c = configs_of("ck-admin")
c = c if isinstance(c, dict) else {}
is_(c["retention.ms"].value if "retention.ms" in c else None, "3600000",
    "describe_configs shows the new retention.ms")
ok("retention.ms" in c and not c["retention.ms"].is_default,
   "and it is no longer the default")

r = admin_result(admin.alter_configs([ConfigResource(
    "topic", "ck-admin", set_config={"retention.ms": "soon"})]))
is_([err_code(v) for v in r.values()], [KafkaError.INVALID_CONFIG],
    "alter_configs with a bad value: INVALID_CONFIG")
r = admin_result(admin.alter_configs([ConfigResource(
    "topic", "ck-admin", set_config={"no.such.config": "1"})]))
is_([err_code(v) for v in r.values()], [KafkaError.INVALID_CONFIG],
    "alter_configs with an unknown key: INVALID_CONFIG")

r = admin_result(admin.create_topics([NewTopic(
    "ck-cfg", 1, 1, config={"retention.ms": "1234567",
                            "cleanup.policy": "compact"})]))
is_(err_code(r["ck-cfg"]), 0, "create_topics with configs")
c = configs_of("ck-cfg")
c = c if isinstance(c, dict) else {}
is_((c.get("retention.ms") and c["retention.ms"].value,
     c.get("cleanup.policy") and c["cleanup.policy"].value),
    ("1234567", "compact"), "the configs are in effect")

# The broker resource lists every broker key with its current value,
# the keys --help prints, topic defaults included.
r = admin_result(admin.describe_configs([ConfigResource("broker", "0")]))
(bc,) = r.values()
bc = bc if isinstance(bc, dict) else {}
help_keys = set()
in_broker = False
for line in subprocess.run([SKALD, "--help"], capture_output=True,
                           text=True).stdout.splitlines():
    if line.startswith("Broker keys"):
        in_broker = True
    elif line.startswith("Topic keys"):
        in_broker = False
    elif in_broker and line.startswith("  ") and not line.startswith("  KEY"):
        help_keys.add(line.split()[0])
is_(sorted(help_keys - set(bc)), [],
    "describe_configs broker: every broker key of --help is listed")
ok(len(help_keys) > 30, "... and --help lists %d of them" % len(help_keys))
is_((bc.get("num.partitions") and bc["num.partitions"].value,
     bc.get("log.cleaner.enable") and bc["log.cleaner.enable"].value,
     bc.get("log.message.timestamp.type")
     and bc["log.message.timestamp.type"].value),
    ("1", "true", "CreateTime"), "... with their current values")
ok(all(e.is_read_only for e in bc.values()), "... all read-only")

r = admin_result(admin.describe_configs([ConfigResource("topic",
                                                        "ck-nosuch")]))
is_([err_code(v) for v in r.values()], [KafkaError.UNKNOWN_TOPIC_OR_PART],
    "describe_configs on a missing topic: UNKNOWN_TOPIC_OR_PART")

r = admin_result(admin.delete_topics(["ck-admin", "ck-cfg"]))
is_([err_code(r[t]) for t in ("ck-admin", "ck-cfg")], [0, 0],
    "delete_topics")
is_((partitions_of("ck-admin"), partitions_of("ck-cfg")), (None, None),
    "list_topics no longer shows them")
r = admin_result(admin.delete_topics(["ck-admin"]))
is_(err_code(r["ck-admin"]), KafkaError.UNKNOWN_TOPIC_OR_PART,
    "deleting it again: UNKNOWN_TOPIC_OR_PART")

# A deleted topic re-created starts empty.
admin_result(admin.create_topics([NewTopic("ck-recreate", 1, 1)]))
produce(BS, "ck-recreate", [{"value": b"old"}])
admin_result(admin.delete_topics(["ck-recreate"]))
r = admin_result(admin.create_topics([NewTopic("ck-recreate", 1, 1)]))
is_(err_code(r["ck-recreate"]), 0, "re-create a deleted topic")
res = produce(BS, "ck-recreate", [{"value": b"new"}])
is_(res[0][2] if res[0] else None, 0, "it starts again at offset 0")

# ------------------------------------------------------------ headers, ts
admin_result(admin.create_topics([NewTopic("ck-headers", 1, 1)]))
T0 = 1700000000000
recs = []
for i in range(50):
    recs.append({
        "key": b"k%d" % i, "value": rng.randbytes(rng.randrange(0, 500)),
        "partition": 0, "timestamp": T0 + i * 1000,
        "headers": [("h1", b"v%d" % i), ("bin", bytes(range(256))),
                    ("dup", b"a"), ("dup", b"b"), ("empty", b"")]})
recs.append({"key": None, "value": None, "partition": 0,
             "timestamp": T0 + 50 * 1000})  # null key and value
res = produce(BS, "ck-headers", recs)
is_([r[0] for r in res], [None] * len(recs), "produced %d records with "
    "headers and timestamps" % len(recs))
is_([r[2] for r in res], list(range(len(recs))), "offsets 0..%d" %
    (len(recs) - 1))
got = consume(BS, "ck-headers", [0], len(recs))
is_(len(got), len(recs), "consumed them back (assign)")
is_([(m.key(), m.value()) for m in got],
    [(r["key"], r["value"]) for r in recs], "keys and values equal")
is_([m.headers() for m in got], [r.get("headers") for r in recs],
    "headers equal, in order, duplicates kept")
is_([m.timestamp() for m in got],
    [(TIMESTAMP_CREATE_TIME, r["timestamp"]) for r in recs],
    "CreateTime timestamps equal")

# ------------------------------------------------------------ ListOffsets
cons = Consumer({"bootstrap.servers": BS, "group.id": "skald-test",
                 "enable.auto.commit": False})
tp = TopicPartition("ck-headers", 0)
is_(cons.get_watermark_offsets(tp, timeout=10, cached=False),
    (0, len(recs)), "get_watermark_offsets: (0, %d)" % len(recs))
# One query per call: librdkafka merges duplicate partitions in a request.
res = [cons.offsets_for_times([TopicPartition("ck-headers", 0, ts)],
                              timeout=10)[0]
       for ts in (T0, T0 + 5500, T0 + 10000, T0 + 10 ** 7, 0)]
is_([r.offset for r in res], [0, 6, 10, -1, 0],
    "offsets_for_times: exact, between, after the last, before the first")
cons.close()

# ------------------------------------------------------------ codecs
text = b"the quick brown fox jumps over the lazy dog " * 20
for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
    topic = "ck-codec-" + codec
    recs = [{"key": b"%s-%d" % (codec.encode(), i), "partition": 0,
             "value": text[:rng.randrange(0, len(text))] +
             (rng.randbytes(20) if i % 3 == 0 else b"")} for i in range(500)]
    res = produce(BS, topic, recs, conf={"compression.type": codec,
                                         "linger.ms": 20})
    good = all(r and r[0] is None for r in res)
    got = consume(BS, topic, [0], len(recs))
    ok(good and [(m.key(), m.value()) for m in got] ==
       [(r["key"], r["value"]) for r in recs] and
       [m.offset() for m in got] == list(range(len(recs))),
       "compression.type=%s: 500 records round trip" % codec)

# ------------------------------------------------------------ sizes
big = rng.randbytes(900 * 1024)
res = produce(BS, "ck-900k", [{"key": b"big", "value": big, "partition": 0}])
is_(res[0][0], None, "a 900 KB record is accepted")
got = consume(BS, "ck-900k", [0], 1)
ok(len(got) == 1 and got[0].value() == big, "and comes back byte-exact")

huge = rng.randbytes(2 * 1024 * 1024)
# One flush each, so that no two of them share a batch.
res = [produce(BS, "ck-limit", [{"value": v, "partition": 0}],
               conf={"message.max.bytes": 3000000, "retries": 0})[0]
       for v in (b"before", huge, b"after")]
codes = [r[0].code() if r and r[0] else None for r in res]
is_(codes, [None, KafkaError.MSG_SIZE_TOO_LARGE, None],
    "a 2 MB record is refused with MESSAGE_TOO_LARGE, its neighbours kept")
got = consume(BS, "ck-limit", [0], 2)
is_([m.value() for m in got], [b"before", b"after"],
    "the log holds only the accepted records")

r = admin_result(admin.create_topics([NewTopic(
    "ck-bigtopic", 1, 1, config={"max.message.bytes": "3145728"})]))
res = produce(BS, "ck-bigtopic", [{"value": huge, "partition": 0}],
              conf={"message.max.bytes": 3000000})
is_(res[0][0], None, "with max.message.bytes raised on the topic, 2 MB is "
    "accepted")
got = consume(BS, "ck-bigtopic", [0], 1)
ok(len(got) == 1 and got[0].value() == huge,
   "and fetched whole although over max.partition.fetch.bytes")

# ------------------------------------------------------------ acks
for acks in ("0", "1", "all"):
    topic = "ck-acks-" + acks
    recs = [{"value": b"acks-%s-%d" % (acks.encode(), i), "partition": 0}
            for i in range(200)]
    res = produce(BS, topic, recs, conf={"acks": acks})
    is_([r[0] for r in res if r], [None] * 200,
        "acks=%s: 200 delivery reports without error" % acks)
    got = consume(BS, topic, [0], 200)
    is_([m.value() for m in got], [r["value"] for r in recs],
        "acks=%s: all 200 stored in order" % acks)

# ------------------------------------------------------------ fetch details
r = admin_result(admin.create_topics([NewTopic(
    "ck-lat", 1, 1, config={"message.timestamp.type": "LogAppendTime"})]))
t0 = int(time.time() * 1000)
produce(BS, "ck-lat", [{"value": b"x", "partition": 0, "timestamp": 1000}])
got = consume(BS, "ck-lat", [0], 1)
ts = got[0].timestamp() if got else None
ok(ts and ts[0] == TIMESTAMP_LOG_APPEND_TIME and
   t0 - 60000 < ts[1] < t0 + 60000,
   "message.timestamp.type=LogAppendTime: the broker's time replaces "
   "the producer's (%r)" % (ts,))

# Many small batches read with tiny fetch limits.
admin_result(admin.create_topics([NewTopic("ck-small", 3, 1)]))
recs = [{"key": b"%d" % i, "value": b"%05d" % i + b"x" * 300}
        for i in range(600)]
produce(BS, "ck-small", recs, conf={"batch.num.messages": 3,
                                    "linger.ms": 0})
got = consume(BS, "ck-small", [0, 1, 2], 600, conf={
    "fetch.max.bytes": 2000, "message.max.bytes": 1000,
    "max.partition.fetch.bytes": 1000, "receive.message.max.bytes": 4000})
is_(sorted(m.value() for m in got), sorted(r["value"] for r in recs),
    "600 records read with fetch.max.bytes=2000, partition max 1000")

got = consume(BS, "ck-small", [0], 1, conf={"auto.offset.reset": "earliest"},
              offsets={0: 100000})
is_([m.offset() for m in got], [0], "an offset past the end is reset "
    "(OFFSET_OUT_OF_RANGE, then earliest)")

# A fetch waiting at the end is answered as soon as a record arrives,
# not when fetch.wait.max.ms (10 s) runs out.
admin_result(admin.create_topics([NewTopic("ck-poll", 1, 1)]))
cons = Consumer({"bootstrap.servers": BS, "group.id": "skald-test",
                 "enable.auto.commit": False, "fetch.wait.max.ms": 10000})
cons.assign([TopicPartition("ck-poll", 0, 0)])
for _ in range(5):
    cons.poll(0.2)  # connected and parked in a long poll
prod = Producer({"bootstrap.servers": BS, "linger.ms": 0})
prod.produce("ck-poll", b"wake up", partition=0)
prod.flush(10)
t = time.monotonic()
m = None
while time.monotonic() - t < 15:
    m = cons.poll(0.1)
    if m is not None and not m.error():
        break
el = time.monotonic() - t
ok(m is not None and m.value() == b"wake up" and el < 5,
   "a long-polling fetch is woken by a produce (%.2fs)" % el)
cons.close()

ok(b.alive(), "broker still running")
b.stop()
done()
