#!/usr/bin/python3
# Consumer groups with kafka-python 2.0.2 (JoinGroup v2, OffsetCommit v2,
# OffsetFetch v1): commit, restart the consumer, resume; restart the
# broker, resume; and one group shared by librdkafka and kafka-python on
# the "range" assignor.
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Consumer, KafkaError  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from kafka.coordinator.assignors.range import (  # noqa: E402
    RangePartitionAssignor)

logging.basicConfig(level=logging.CRITICAL)
b = Broker(args=["--set", "group.initial.rebalance.delay.ms=500"])
BS = b.bootstrap
admin = AdminClient({"bootstrap.servers": BS})
r = admin_result(admin.create_topics([NewTopic("kp", 3, 1),
                                      NewTopic("mixed", 6, 1)]))
ok(all(v is None for v in r.values()), "topics kp (3) and mixed (6)")


def kp_consumer(group, topic, **kw):
    c = dict(bootstrap_servers=BS, group_id=group,
             enable_auto_commit=False, auto_offset_reset="earliest",
             session_timeout_ms=10000, heartbeat_interval_ms=500,
             request_timeout_ms=15000, fetch_max_wait_ms=100)
    c.update(kw)
    return KafkaConsumer(topic, **c)


def take(cons, count, timeout=30):
    """Poll until count records arrived (or timeout); returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for _, rs in cons.poll(timeout_ms=200,
                               max_records=count - len(got)).items():
            got.extend(rs)
    return got


# ------------------------------------------------------------ commit/resume
produce(BS, "kp", [{"value": b"kp%04d" % i} for i in range(2000)])
a = kp_consumer("g-kp", "kp")
first = take(a, 1000)
is_(len(first), 1000, "kafka-python consumer A reads 1000 records")
a.commit()
a.close()
bcons = kp_consumer("g-kp", "kp")
second = take(bcons, 1000)
extra = take(bcons, 1, timeout=1.5)
is_(len(second), 1000, "consumer B (same group) reads the other 1000")
is_(len(extra), 0, "and nothing more")
vals = [m.value for m in first + second]
is_(sorted(vals), [b"kp%04d" % i for i in range(2000)],
    "A and B together read every record once: B resumed from A's commit")
bcons.commit()
bcons.close()

# ------------------------------------------------------------ broker restart
b.restart()
produce(BS, "kp", [{"value": b"after%02d" % i} for i in range(10)])
c = kp_consumer("g-kp", "kp")
got = take(c, 10)
extra = take(c, 1, timeout=1.5)
is_(sorted(m.value for m in got), [b"after%02d" % i for i in range(10)],
    "after a broker restart the group resumes from its committed offsets")
is_(len(extra), 0, "with nothing read twice")
c.commit()
part_offsets = {p: c.committed(tp) for tp in c.assignment()
                for p in [tp.partition]}
c.close()
is_(sum(part_offsets.values()), 2010, "committed offsets cover all 2010")

# ------------------------------------------------------------ mixed group


class KpMember:
    def __init__(self):
        self.c = kp_consumer("g-mixed", "mixed", client_id="kp-member",
                             partition_assignment_strategy=[
                                 RangePartitionAssignor])
        self.got = []
        self.assigned = set()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            for _, rs in self.c.poll(timeout_ms=100).items():
                self.got.extend(m.value for m in rs)
            self.assigned = {tp.partition for tp in self.c.assignment()}
        self.c.commit()
        self.c.close()


class CkMember:
    def __init__(self):
        self.c = Consumer({"bootstrap.servers": BS, "group.id": "g-mixed",
                           "partition.assignment.strategy": "range",
                           "auto.offset.reset": "earliest",
                           "session.timeout.ms": 10000,
                           "heartbeat.interval.ms": 500,
                           "client.id": "ck-member"})
        self.got = []
        self.assigned = set()
        self.errors = []
        self.c.subscribe(["mixed"], on_assign=self.on_assign,
                         on_revoke=self.on_revoke)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def on_assign(self, c, parts):
        self.assigned = {p.partition for p in parts}

    def on_revoke(self, c, parts):
        self.assigned = set()

    def run(self):
        while not self.stop.is_set():
            m = self.c.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(str(m.error()))
                continue
            self.got.append(m.value())
        self.c.close()


kpm = KpMember()
ckm = CkMember()


def split_ok():
    a, b_ = kpm.assigned, ckm.assigned
    return a and b_ and not (a & b_) and sorted(a | b_) == list(range(6))


ok(wait_until(split_ok, 40), "librdkafka and kafka-python share group "
   "g-mixed on 'range': 6 partitions split between them")
diag("kafka-python %s, librdkafka %s" % (sorted(kpm.assigned),
                                         sorted(ckm.assigned)))
produce(BS, "mixed", [{"value": b"m%03d" % i, "partition": i % 6}
                      for i in range(600)])
ok(wait_until(lambda: len(kpm.got) + len(ckm.got) >= 600, 30),
   "600 records consumed by the pair")
time.sleep(0.5)
for m in (kpm, ckm):
    m.stop.set()
    m.t.join(20)
is_(sorted(kpm.got + ckm.got), sorted(b"m%03d" % i for i in range(600)),
    "each record exactly once across the two clients")
ok(kpm.got and ckm.got, "both consumed")
is_(ckm.errors, [], "no librdkafka consumer errors")

b.stop()
done()
