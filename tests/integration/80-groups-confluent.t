#!/usr/bin/python3
# Consumer groups with confluent-kafka (librdkafka 2.0.2) and kcat -G:
# three consumers share six partitions, 30,000 records are consumed
# exactly once, a leaving member's partitions are taken over, a later
# consumer resumes from the committed offsets; cooperative-sticky; kcat.
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

N = 30000
b = Broker(args=["--set", "group.initial.rebalance.delay.ms=1000"])
BS = b.bootstrap
admin = AdminClient({"bootstrap.servers": BS})
r = admin_result(admin.create_topics([NewTopic("grp", 6, 1),
                                      NewTopic("coop", 6, 1),
                                      NewTopic("kc", 2, 1)]))
ok(all(v is None for v in r.values()), "topics grp, coop (6 partitions) "
   "and kc (2)")


class Member:
    """A group consumer polling in its own thread. Offsets of what it
    returned are committed synchronously before a revoke and on close,
    so a partition's next owner starts exactly after them."""

    def __init__(self, name, group, topic, conf=None):
        self.name = name
        self.got = []
        self.assigned = set()
        self.errors = []
        self.stop = threading.Event()
        c = {"bootstrap.servers": BS, "group.id": group,
             "auto.offset.reset": "earliest", "enable.auto.commit": False,
             "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
             "client.id": name}
        c.update(conf or {})
        self.cooperative = c.get("partition.assignment.strategy") == \
            "cooperative-sticky"
        self.c = Consumer(c)
        self.c.subscribe([topic], on_assign=self._assign,
                         on_revoke=self._revoke)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _assign(self, c, parts):
        if self.cooperative:
            self.assigned |= {p.partition for p in parts}
        else:
            self.assigned = {p.partition for p in parts}

    def _revoke(self, c, parts):
        try:
            c.commit(asynchronous=False)
        except Exception as e:  # noqa: BLE001 (nothing consumed yet)
            if "NO_OFFSET" not in str(e):
                self.errors.append("commit on revoke: %s" % e)
        if self.cooperative:
            self.assigned -= {p.partition for p in parts}
        else:
            self.assigned = set()

    def _run(self):
        n = 0
        while not self.stop.is_set():
            m = self.c.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(str(m.error()))
                continue
            self.got.append((m.partition(), m.offset(), m.value()))
            n += 1
            if n % 2000 == 0:
                self.c.commit(asynchronous=True)

    def close(self):
        self.stop.set()
        self.t.join(20)
        try:
            self.c.commit(asynchronous=False)
        except Exception as e:  # noqa: BLE001
            if "NO_OFFSET" not in str(e):
                self.errors.append("final commit: %s" % e)
        self.c.close()


def disjoint_cover(members, parts=6):
    seen = []
    for m in members:
        seen += list(m.assigned)
    return sorted(seen) == list(range(parts))


# ------------------------------------------------------------ 3 members
ms = [Member("c%d" % i, "g-grp", "grp") for i in range(3)]
ok(wait_until(lambda: disjoint_cover(ms) and all(m.assigned for m in ms),
              30), "3 members: each of the 6 partitions assigned to "
   "exactly one member")
diag("assignment: %s" % [sorted(m.assigned) for m in ms])

produce(BS, "grp", [{"value": b"r%05d" % i, "key": b"%d" % i}
                    for i in range(N)], conf={"linger.ms": 20})


def total(members):
    return sum(len(m.got) for m in members)


ok(wait_until(lambda: total(ms) >= N // 2, 60), "half the records "
   "consumed by the three")
ok(all(m.got for m in ms), "every member consumed some")

# One member leaves; the other two take over its partitions.
leaver = ms.pop()
leaver.close()
ok(wait_until(lambda: disjoint_cover(ms) and all(m.assigned for m in ms),
              30), "after one member left, the other two own all 6 "
   "partitions")
diag("assignment: %s" % [sorted(m.assigned) for m in ms])
ok(wait_until(lambda: total(ms) + len(leaver.got) >= N, 60),
   "all records consumed")
time.sleep(0.5)  # nothing more may come: duplicates would show here
for m in ms:
    m.close()
allrecs = [v for m in ms + [leaver] for (_, _, v) in m.got]
is_(len(allrecs), N, "%d records consumed in all" % N)
is_(len(set(allrecs)), N, "each exactly once")
is_([e for m in ms + [leaver] for e in m.errors], [], "no consumer errors")

# A new consumer after everyone closed resumes from the commits.
produce(BS, "grp", [{"value": b"late%03d" % i} for i in range(100)])
late = Member("late", "g-grp", "grp")
ok(wait_until(lambda: len(late.got) >= 100, 30),
   "a new member gets the 100 records produced after the others closed")
time.sleep(0.5)
late.close()
is_(sorted(v for (_, _, v) in late.got),
    [b"late%03d" % i for i in range(100)],
    "and only those: it resumed from the committed offsets")

c = Consumer({"bootstrap.servers": BS, "group.id": "g-grp"})
committed = c.committed([TopicPartition("grp", p) for p in range(6)],
                        timeout=10)
c.close()
is_(sum(tp.offset for tp in committed), N + 100,
    "committed offsets add up to every record")

# ------------------------------------------------------------ cooperative
coop_conf = {"partition.assignment.strategy": "cooperative-sticky"}
cs = [Member("k%d" % i, "g-coop", "coop", coop_conf) for i in range(3)]
ok(wait_until(lambda: disjoint_cover(cs) and all(m.assigned for m in cs),
              40), "cooperative-sticky: 3 members, partitions disjoint "
   "and complete")
diag("assignment: %s" % [sorted(m.assigned) for m in cs])
produce(BS, "coop", [{"value": b"c%04d" % i} for i in range(3000)])
ok(wait_until(lambda: total(cs) >= 1500, 30), "half consumed")
gone = cs.pop()
gone.close()
ok(wait_until(lambda: disjoint_cover(cs), 40),
   "cooperative-sticky: the two remaining members take over")
ok(wait_until(lambda: total(cs) + len(gone.got) >= 3000, 30),
   "all 3000 consumed")
time.sleep(0.5)
for m in cs:
    m.close()
vals = [v for m in cs + [gone] for (_, _, v) in m.got]
is_((len(vals), len(set(vals))), (3000, 3000),
    "cooperative-sticky: each record exactly once")

# ------------------------------------------------------------ kcat -G
produce(BS, "kc", [{"value": b"kc%03d" % i, "partition": i % 2}
                   for i in range(200)], conf={})
r = run(["kcat", "-b", BS, "-G", "g-kcat", "-e", "-q", "-X",
         "auto.offset.reset=earliest", "kc"], timeout=40)
lines = sorted(r.stdout.decode().split())
is_(lines, sorted("kc%03d" % i for i in range(200)),
    "kcat -G reads every record once")
produce(BS, "kc", [{"value": b"more%d" % i} for i in range(5)])
r = run(["kcat", "-b", BS, "-G", "g-kcat", "-e", "-q", "kc"], timeout=40)
is_(sorted(r.stdout.decode().split()), ["more%d" % i for i in range(5)],
    "a second kcat -G resumes from the group's committed offsets")

b.stop()
done()
