#!/usr/bin/python3
# python3-kafka (kafka-python 2.0.2) against skald, versions negotiated
# (no api_version pinned): producer, assign/seek consumer, admin client.
import logging
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import (ConfigResource, ConfigResourceType,  # noqa: E402
                         KafkaAdminClient, NewTopic)
from kafka.errors import TopicAlreadyExistsError  # noqa: E402

logging.basicConfig(level=logging.CRITICAL)
rng = random.Random(30)
b = Broker(args=["--set", "num.partitions=2"])
BS = b.bootstrap
N = 1000

# ------------------------------------------------------------ produce
producer = KafkaProducer(bootstrap_servers=BS, acks="all", linger_ms=5,
                         request_timeout_ms=10000, max_block_ms=10000)
ver = producer.config.get("api_version")
diag("kafka-python inferred broker version %s" % (ver,))
ok(ver is not None and tuple(ver) >= (0, 11),
   "negotiated a version with record batch v2 (>= 0.11)")
recs = [(b"kp-%04d" % i, rng.randbytes(rng.randrange(0, 2000)),
         [("n", b"%d" % i)]) for i in range(N)]
futs = [producer.send("kp-topic", key=k, value=v, headers=h)
        for k, v, h in recs]
producer.flush(30)
meta = []
errors = 0
for f in futs:
    try:
        meta.append(f.get(timeout=10))
    except Exception as e:  # noqa: BLE001
        errors += 1
        if errors == 1:
            diag("first produce error: %r" % e)
is_(errors, 0, "%d records produced with acks=all" % N)
per = {}
for m in meta:
    per.setdefault(m.partition, []).append(m.offset)
ok(all(sorted(v) == list(range(len(v))) for v in per.values()),
   "offsets are contiguous per partition")
is_(sorted(per), [0, 1], "keys spread over both partitions")

# gzip is built into kafka-python (other codecs need extra libraries).
gp = KafkaProducer(bootstrap_servers=BS, compression_type="gzip",
                   linger_ms=20)
gz = [b"gzip-%d " % i * 30 for i in range(100)]
gf = [gp.send("kp-gzip", value=v, partition=0) for v in gz]
gp.flush(30)
is_([f.get(timeout=10).offset for f in gf], list(range(100)),
    "100 gzip records produced")
gp.close(10)
producer.close(10)

# ------------------------------------------------------------ consume


def consume_all(topic, parts, count):
    c = KafkaConsumer(bootstrap_servers=BS, group_id=None,
                      enable_auto_commit=False, request_timeout_ms=15000,
                      fetch_max_wait_ms=200)
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    c.seek_to_beginning()
    got = []
    import time
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        for tp, rs in c.poll(timeout_ms=500).items():
            got.extend(rs)
    c.close()
    return got


got = consume_all("kp-topic", sorted(per), N)
is_(len(got), N, "consumed %d records with assign + seek_to_beginning" % N)
by_key = {r.key: (r.value, [(k, v) for k, v in r.headers]) for r in got}
bad = [k for k, v, h in recs if by_key.get(k) != (v, h)]
is_(len(bad), 0, "keys, values and headers equal")
got_per = {}
for r in got:
    got_per.setdefault(r.partition, []).append(r.offset)
ok(all(v == sorted(v) for v in got_per.values()), "in offset order")

got = consume_all("kp-gzip", [0], 100)
is_([r.value for r in got], gz, "gzip records come back equal")

# ------------------------------------------------------------ admin
admin = KafkaAdminClient(bootstrap_servers=BS, request_timeout_ms=10000)
res = admin.create_topics([NewTopic("kp-admin", num_partitions=3,
                                    replication_factor=1)])
is_([e[1] for e in res.topic_errors], [0], "KafkaAdminClient.create_topics")
ok("kp-admin" in admin.list_topics(), "list_topics shows it")
try:
    admin.create_topics([NewTopic("kp-admin", 3, 1)])
    dup = None
except TopicAlreadyExistsError as e:
    dup = e
ok(dup is not None, "creating it again raises TopicAlreadyExistsError")
res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                             "kp-admin")])
names = [e[0] for r in res for e in r.resources[0][4]] if res else []
ok("retention.ms" in names, "describe_configs lists retention.ms")
res = admin.delete_topics(["kp-admin"])
is_([e[1] for e in res.topic_error_codes], [0],
    "KafkaAdminClient.delete_topics")
ok("kp-admin" not in admin.list_topics(), "list_topics no longer shows it")
admin.close()

b.stop()
done()
