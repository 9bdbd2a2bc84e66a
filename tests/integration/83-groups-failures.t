#!/usr/bin/python3
# Group failures and bad input: a SIGKILLed consumer is evicted after its
# session timeout; a broker restart while a group is active (members
# rejoin, offsets intact); shutdown answers held JoinGroups at once; and
# raw requests for every group error code, after which the group is
# still consistent.
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

ARGS = ["--set", "group.min.session.timeout.ms=1000",
        "--set", "group.initial.rebalance.delay.ms=0",
        "--set", "offsets.retention.check.interval.ms=200"]
b = Broker(args=ARGS)
BS = b.bootstrap
admin = AdminClient({"bootstrap.servers": BS})
r = admin_result(admin.create_topics([NewTopic("f", 4, 1),
                                      NewTopic("raw", 2, 1)]))
ok(all(v is None for v in r.values()), "topics f (4) and raw (2)")

NONE, OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC = 0, 12, 3
NOT_COORDINATOR, ILLEGAL_GENERATION, INCONSISTENT_PROTOCOL = 16, 22, 23
INVALID_GROUP_ID, UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT = 24, 25, 26
REBALANCE_IN_PROGRESS, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 27, 68, 69
MEMBER_ID_REQUIRED, GROUP_MAX_SIZE_REACHED, FENCED_INSTANCE_ID = 79, 81, 82
GROUP_SUBSCRIBED_TO_TOPIC = 86


class Member:
    """A confluent-kafka group member polling in a thread."""

    def __init__(self, group, topic, name, session=3000):
        self.got = []
        self.assigned = set()
        self.stop = threading.Event()
        self.c = Consumer({"bootstrap.servers": BS, "group.id": group,
                           "auto.offset.reset": "earliest",
                           "enable.auto.commit": False,
                           "session.timeout.ms": session,
                           "heartbeat.interval.ms": 300,
                           "client.id": name})
        self.c.subscribe([topic], on_assign=self._assign,
                         on_revoke=self._revoke)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _assign(self, c, parts):
        self.assigned = {p.partition for p in parts}

    def _revoke(self, c, parts):
        try:
            c.commit(asynchronous=False)
        except Exception:  # noqa: BLE001 (nothing to commit, or fenced)
            pass
        self.assigned = set()

    def _run(self):
        while not self.stop.is_set():
            m = self.c.poll(0.1)
            if m is None or m.error():
                continue
            self.got.append(m.value())
            if len(self.got) % 250 == 0:
                try:
                    self.c.commit(asynchronous=False)
                except Exception:  # noqa: BLE001
                    pass

    def close(self):
        self.stop.set()
        self.t.join(20)
        try:
            self.c.commit(asynchronous=False)
        except Exception:  # noqa: BLE001
            pass
        self.c.close()


def committed_sum(group, topic, parts):
    c = Consumer({"bootstrap.servers": BS, "group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(parts)],
                          timeout=10)
        return sum(max(tp.offset, 0) for tp in res)
    finally:
        c.close()


# ------------------------------------------------------------ SIGKILL
CHILD = r"""
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "g-kill",
              "session.timeout.ms": 3000, "heartbeat.interval.ms": 300,
              "auto.offset.reset": "earliest", "client.id": "victim"})
c.subscribe(["f"], on_assign=lambda c, p: print("assigned", len(p),
                                                 flush=True))
while True:
    c.poll(0.1)
"""
child = subprocess.Popen([sys.executable, "-c", CHILD, BS],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
survivor = Member("g-kill", "f", "survivor")
line = b""
deadline = time.monotonic() + 30
while time.monotonic() < deadline and b"assigned" not in line:
    line = child.stdout.readline()
ok(wait_until(lambda: survivor.assigned and len(survivor.assigned) < 4, 30),
   "a child process and this one share group g-kill (%s)" %
   sorted(survivor.assigned))
os.kill(child.pid, signal.SIGKILL)
child.wait(10)
t0 = time.monotonic()
ok(wait_until(lambda: survivor.assigned == {0, 1, 2, 3}, 20),
   "after SIGKILL the survivor gets all 4 partitions")
took = time.monotonic() - t0
diag("reassigned %.1f s after the kill (session.timeout.ms 3000)" % took)
ok(took >= 2.0, "not before the session timeout")
ok("timed out after 3000 ms" in b.log(), "the broker logs the eviction")
survivor.close()

# ------------------------------------------------------------ restart
ms = [Member("g-restart", "f", "r%d" % i, session=6000) for i in range(2)]
ok(wait_until(lambda: all(m.assigned for m in ms) and
              sorted(ms[0].assigned | ms[1].assigned) == [0, 1, 2, 3] and
              not (ms[0].assigned & ms[1].assigned), 30),
   "two members share g-restart")
produce(BS, "f", [{"value": b"a%04d" % i, "partition": i % 4}
                  for i in range(1000)])
ok(wait_until(lambda: sum(len(m.got) for m in ms) >= 1000, 30),
   "1000 records consumed")
ok(wait_until(lambda: committed_sum("g-restart", "f", 4) >= 1000, 20),
   "and committed")
b.restart()
is_(committed_sum("g-restart", "f", 4), 1000,
    "after the broker restart the committed offsets are intact")


def stable_with(group, n):
    for g in admin.list_groups(group, timeout=10):
        if g.id == group and g.state == "Stable" and len(g.members) == n:
            return True
    return False


ok(wait_until(lambda: stable_with("g-restart", 2) and
              all(m.assigned for m in ms) and
              sorted(ms[0].assigned | ms[1].assigned) == [0, 1, 2, 3], 40),
   "the members rejoined the group: Stable with both")
produce(BS, "f", [{"value": b"b%04d" % i, "partition": i % 4}
                  for i in range(1000)])
ok(wait_until(lambda: sum(len(m.got) for m in ms) >= 2000, 40),
   "1000 more consumed after the restart")
time.sleep(0.5)
for m in ms:
    m.close()
vals = [v for m in ms for v in m.got]
if not is_((len(vals), len(set(vals))), (2000, 2000),
           "every record exactly once across the restart"):
    seen = set()
    dups = sorted({v for v in vals if v in seen or seen.add(v)})
    diag("%d duplicates, from %s to %s" % (len(dups), dups[:1], dups[-1:]))

# ------------------------------------------------------------ raw requests
H, P = b.host, b.port


def s16(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">h", len(x)) + x


def ns16(x):
    return struct.pack(">h", -1) if x is None else s16(x)


def b32(x):
    return struct.pack(">i", len(x)) + x


def arr(items):
    return struct.pack(">i", len(items)) + b"".join(items)


def sub(*topics):
    """ConsumerProtocolSubscription v0."""
    return struct.pack(">h", 0) + arr([s16(t) for t in topics]) + b32(b"")


class Rd:
    def __init__(self, buf):
        self.b, self.o = buf, 0

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def i8(self):
        return self._u(">b")

    def i16(self):
        return self._u(">h")

    def i32(self):
        return self._u(">i")

    def i64(self):
        return self._u(">q")

    def str(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.b[self.o:self.o + n].decode()
        self.o += n
        return v

    def bytes(self):
        n = self.i32()
        if n < 0:
            return None
        v = self.b[self.o:self.o + n]
        self.o += n
        return v


class Conn:
    def __init__(self):
        self.s = socket.create_connection((H, P), 5)
        self.corr = 0

    def send(self, key, ver, body):
        self.corr += 1
        self.s.sendall(kreq(key, ver, self.corr, body))

    def recv(self, timeout=10):
        f = recv_frame(self.s, timeout)
        assert f is not None, "connection closed"
        return Rd(f[4:])

    def close(self):
        self.s.close()


def join_send(c, group, member="", ver=3, session=10000, protos=None,
              ptype="consumer", instance=None):
    protos = protos or [("range", sub("raw"))]
    body = s16(group) + struct.pack(">i", session)
    if ver >= 1:
        body += struct.pack(">i", session)
    body += s16(member)
    if ver >= 5:
        body += ns16(instance)
    body += s16(ptype) + arr([s16(n) + b32(m) for n, m in protos])
    c.send(11, ver, body)


def join_recv(c, ver=3, timeout=10):
    r = c.recv(timeout)
    if ver >= 2:
        r.i32()
    out = {"err": r.i16(), "gen": r.i32(), "protocol": r.str(),
           "leader": r.str(), "member": r.str(), "members": []}
    for _ in range(r.i32()):
        mid = r.str()
        if ver >= 5:
            r.str()
        out["members"].append((mid, r.bytes()))
    return out


def join(group, member="", ver=3, **kw):
    c = Conn()
    join_send(c, group, member, ver, **kw)
    res = join_recv(c, ver)
    c.close()
    return res


def sync(c, group, gen, member, assignments=(), ver=1, send_only=False):
    c.send(14, ver, s16(group) + struct.pack(">i", gen) + s16(member) +
           (ns16(None) if ver >= 3 else b"") +
           arr([s16(m) + b32(a) for m, a in assignments]))
    if send_only:
        return None
    return sync_recv(c, ver)


def sync_recv(c, ver=1, timeout=10):
    r = c.recv(timeout)
    if ver >= 1:
        r.i32()
    return r.i16(), r.bytes()


def heartbeat(group, gen, member, instance=None, ver=1):
    c = Conn()
    c.send(12, ver, s16(group) + struct.pack(">i", gen) + s16(member) +
           (ns16(instance) if ver >= 3 else b""))
    r = c.recv()
    c.close()
    if ver >= 1:
        r.i32()
    return r.i16()


def commit(group, gen, member, parts, ver=2, retention=-1):
    """parts: [(topic, partition, offset, metadata)] -> {(t, p): err}"""
    by_topic = {}
    for t, p, o, md in parts:
        by_topic.setdefault(t, []).append(struct.pack(">iq", p, o) +
                                          ns16(md))
    body = s16(group)
    if ver >= 1:
        body += struct.pack(">i", gen) + s16(member)
    if 2 <= ver <= 4:
        body += struct.pack(">q", retention)
    body += arr([s16(t) + arr(ps) for t, ps in by_topic.items()])
    c = Conn()
    c.send(8, ver, body)
    r = c.recv()
    c.close()
    if ver >= 3:
        r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.str()
        for _ in range(r.i32()):
            p = r.i32()
            out[(t, p)] = r.i16()
    return out


def fetch_offsets(group, topic, parts, ver=1):
    c = Conn()
    c.send(9, ver, s16(group) + arr([s16(topic) + arr(
        [struct.pack(">i", p) for p in parts])]))
    r = c.recv()
    c.close()
    out = {}
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            p, off = r.i32(), r.i64()
            md, err = r.str(), r.i16()
            out[p] = (off, md, err)
    return out


def describe(group):
    c = Conn()
    c.send(15, 0, arr([s16(group)]))
    r = c.recv()
    c.close()
    r.i32()  # one group
    err, gid, state, ptype, proto = (r.i16(), r.str(), r.str(), r.str(),
                                     r.str())
    members = []
    for _ in range(r.i32()):
        members.append((r.str(), r.str(), r.str(), r.bytes(), r.bytes()))
    return {"err": err, "state": state, "type": ptype, "protocol": proto,
            "members": members}


def leave(group, member, ver=1):
    c = Conn()
    c.send(13, ver, s16(group) + s16(member))
    r = c.recv()
    c.close()
    r.i32()
    return r.i16()


def delete_groups(*groups):
    c = Conn()
    c.send(42, 1, arr([s16(g) for g in groups]))
    r = c.recv()
    c.close()
    r.i32()
    return {r.str(): r.i16() for _ in range(r.i32())}


def joined(group, n):
    """Poll until the broker holds a rebalance of group with n members:
    requests on separate connections need not arrive in send order."""
    return wait_until(lambda: (lambda d: d["state"] == "PreparingRebalance"
                               and len(d["members"]) == n)(describe(group)),
                      10)


# Group ids and session timeouts.
is_(join("")["err"], INVALID_GROUP_ID, "JoinGroup, empty group id: "
    "INVALID_GROUP_ID")
is_(join("x" * 256)["err"], INVALID_GROUP_ID,
    "JoinGroup, 256-byte group id: INVALID_GROUP_ID")
is_(join("y" * 255)["err"], NONE, "a 255-byte group id is fine")
is_(join("g-s", session=999)["err"], INVALID_SESSION_TIMEOUT,
    "session timeout below group.min.session.timeout.ms: "
    "INVALID_SESSION_TIMEOUT")
is_(join("g-s", session=1800001)["err"], INVALID_SESSION_TIMEOUT,
    "above group.max.session.timeout.ms: INVALID_SESSION_TIMEOUT")
is_(join("g-nope", member="someone")["err"], UNKNOWN_MEMBER_ID,
    "a member id for a group that does not exist: UNKNOWN_MEMBER_ID")
is_(join("g-s", ptype="")["err"], INCONSISTENT_PROTOCOL,
    "an empty protocol type: INCONSISTENT_GROUP_PROTOCOL")

# KIP-394 only from v4.
j4 = join("g-kip394", ver=4)
is_(j4["err"], MEMBER_ID_REQUIRED, "JoinGroup v4 without member id: "
    "MEMBER_ID_REQUIRED")
ok(j4["member"].startswith("skald-test-"), "with a member id to use (%s)" %
   j4["member"])
j4b = join("g-kip394", member=j4["member"], ver=4)
is_((j4b["err"], j4b["gen"], j4b["leader"]), (NONE, 1, j4["member"]),
    "rejoining with it makes generation 1, led by it")
j3 = join("g-kip394-v3", ver=3)
is_((j3["err"], j3["gen"]), (NONE, 1), "v3 without member id joins "
    "directly: no MEMBER_ID_REQUIRED before v4")

# A two-member group by hand: join, the held rejoin, sync.
c1, c2 = Conn(), Conn()
join_send(c1, "g-raw")
a = join_recv(c1)
is_((a["err"], a["gen"], a["leader"] == a["member"]), (NONE, 1, True),
    "member 1 forms generation 1 and leads it")
is_(sync(c1, "g-raw", 1, a["member"], [(a["member"], b"A1")]),
    (NONE, b"A1"), "the leader's SyncGroup gets its assignment")
join_send(c2, "g-raw")
joined("g-raw", 2)
is_(heartbeat("g-raw", 1, a["member"]), REBALANCE_IN_PROGRESS,
    "a second member's join: heartbeat says REBALANCE_IN_PROGRESS")
join_send(c1, "g-raw", member=a["member"])
a2, bm = join_recv(c1), join_recv(c2)
is_((a2["err"], a2["gen"], bm["err"], bm["gen"]), (NONE, 2, NONE, 2),
    "both get generation 2 once the first rejoined")
is_(sorted(m for m, _ in a2["members"]), sorted([a["member"],
                                                bm["member"]]),
    "the leader gets both members")
is_(bm["members"], [], "the follower gets none")
sync(c2, "g-raw", 2, bm["member"], send_only=True)
is_(sync(c1, "g-raw", 2, a["member"], [(a["member"], b"A2"),
                                       (bm["member"], b"B2")]),
    (NONE, b"A2"), "leader's SyncGroup")
is_(sync_recv(c2), (NONE, b"B2"),
    "the follower's held SyncGroup gets its assignment")
A, B = a["member"], bm["member"]

# Wrong generation, unknown member.
is_(heartbeat("g-raw", 1, A), ILLEGAL_GENERATION,
    "Heartbeat with an old generation: ILLEGAL_GENERATION")
is_(heartbeat("g-raw", 2, "nobody"), UNKNOWN_MEMBER_ID,
    "Heartbeat from an unknown member: UNKNOWN_MEMBER_ID")
is_(heartbeat("g-raw", 2, A), NONE, "Heartbeat as it should be")
c3 = Conn()
is_(sync(c3, "g-raw", 3, A)[0], ILLEGAL_GENERATION,
    "SyncGroup with a future generation: ILLEGAL_GENERATION")
is_(sync(c3, "g-raw", 2, "nobody")[0], UNKNOWN_MEMBER_ID,
    "SyncGroup from an unknown member: UNKNOWN_MEMBER_ID")
is_(join("g-raw", member="nobody")["err"], UNKNOWN_MEMBER_ID,
    "JoinGroup with an unknown member id: UNKNOWN_MEMBER_ID")
is_(join("g-raw", protos=[("roundrobin", sub("raw"))])["err"],
    INCONSISTENT_PROTOCOL,
    "a new member without a common protocol: INCONSISTENT_GROUP_PROTOCOL")
is_(join("g-raw", ptype="connect")["err"], INCONSISTENT_PROTOCOL,
    "another protocol type: INCONSISTENT_GROUP_PROTOCOL")

# Commits.
is_(commit("g-raw", 2, A, [("raw", 0, 5, "m")]), {("raw", 0): NONE},
    "OffsetCommit by a member: NONE")
is_(commit("g-raw", 3, A, [("raw", 0, 6, "")]),
    {("raw", 0): ILLEGAL_GENERATION},
    "OffsetCommit with a wrong generation: ILLEGAL_GENERATION")
is_(commit("g-raw", 2, "nobody", [("raw", 0, 6, "")]),
    {("raw", 0): UNKNOWN_MEMBER_ID},
    "OffsetCommit from an unknown member: UNKNOWN_MEMBER_ID")
is_(commit("g-raw", -1, "", [("raw", 1, 6, "")]),
    {("raw", 1): UNKNOWN_MEMBER_ID},
    "a standalone commit to a group with members: UNKNOWN_MEMBER_ID")
is_(commit("g-raw", 2, A, [("no-such-topic", 0, 1, ""), ("raw", 7, 1, ""),
                           ("raw", 1, 9, "")]),
    {("no-such-topic", 0): UNKNOWN_TOPIC, ("raw", 7): UNKNOWN_TOPIC,
     ("raw", 1): NONE},
    "a commit for a topic or partition that does not exist: "
    "UNKNOWN_TOPIC_OR_PARTITION, the rest stored")
is_(commit("g-raw", 2, A, [("raw", 1, 10, "z" * 4097)]),
    {("raw", 1): OFFSET_METADATA_TOO_LARGE},
    "metadata over offset.metadata.max.bytes: OFFSET_METADATA_TOO_LARGE")
is_(fetch_offsets("g-raw", "raw", [0, 1, 2]),
    {0: (5, "m", NONE), 1: (9, "", NONE), 2: (-1, "", NONE)},
    "OffsetFetch: what was accepted, -1 where nothing was")
ok("no-such-topic" not in admin.list_topics(timeout=10).topics,
   "the commit created no topic")
is_(fetch_offsets("", "raw", [0])[0][2], INVALID_GROUP_ID,
    "OffsetFetch v1 with an empty group id: INVALID_GROUP_ID")

d = describe("g-raw")
is_((d["err"], d["state"], d["type"], d["protocol"]),
    (NONE, "Stable", "consumer", "range"),
    "after all that the group is still Stable on range")
is_(sorted((m[0], m[4]) for m in d["members"]),
    sorted([(A, b"A2"), (B, b"B2")]), "with both members and assignments")
is_(describe("g-none")["state"], "Dead", "an unknown group is Dead")
is_(delete_groups("g-raw", "g-none", ""),
    {"g-raw": NON_EMPTY_GROUP, "g-none": GROUP_ID_NOT_FOUND,
     "": INVALID_GROUP_ID},
    "DeleteGroups: NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, INVALID_GROUP_ID")

# Leaving empties the group; then it can be deleted.
is_(leave("g-raw", B), NONE, "member B leaves")
is_(leave("g-raw", "nobody"), UNKNOWN_MEMBER_ID,
    "LeaveGroup of an unknown member: UNKNOWN_MEMBER_ID")
join_send(c1, "g-raw", member=A)
a3 = join_recv(c1)
is_((a3["err"], a3["gen"], len(a3["members"])), (NONE, 3, 1),
    "A rejoins alone: generation 3")
is_(leave("g-raw", A), NONE, "and leaves")
is_(describe("g-raw")["state"], "Empty", "the group is Empty")
is_(commit("g-raw", -1, "", [("raw", 1, 11, "")]), {("raw", 1): NONE},
    "a standalone commit to the Empty group is accepted")
is_(delete_groups("g-raw"), {"g-raw": NONE}, "DeleteGroups: deleted")
is_(fetch_offsets("g-raw", "raw", [0, 1]),
    {0: (-1, "", NONE), 1: (-1, "", NONE)}, "its offsets are gone")
for c in (c1, c2, c3):
    c.close()

# Retention: an explicit retention_time (OffsetCommit v2-4) expires a
# standalone commit at the next check; a live consumer group keeps the
# offsets of topics it subscribes to (KIP-211).
is_(commit("g-ret", -1, "", [("raw", 0, 3, "")], retention=1),
    {("raw", 0): NONE}, "a standalone commit with a 1 ms retention")
ok(wait_until(lambda: fetch_offsets("g-ret", "raw", [0])[0][0] == -1, 10),
   "expires at the next retention check")
ok(wait_until(lambda: describe("g-ret")["state"] == "Dead", 10),
   "and the group with no offsets left is forgotten")
rc = Conn()
join_send(rc, "g-ret2", protos=[("range", sub("raw"))])
rj = join_recv(rc)
sync(rc, "g-ret2", rj["gen"], rj["member"], [(rj["member"], b"")])
is_(commit("g-ret2", rj["gen"], rj["member"], [("raw", 1, 4, "")],
           retention=1), {("raw", 1): NONE},
    "a member's commit with a 1 ms retention")
commit("g-ret3", -1, "", [("raw", 1, 5, "")], retention=1)
ok(wait_until(lambda: fetch_offsets("g-ret3", "raw", [1])[1][0] == -1, 10),
   "a standalone one committed after it has expired")
is_(fetch_offsets("g-ret2", "raw", [1])[1][0], 4,
    "but the Stable consumer group subscribing to the topic keeps its own")
is_(leave("g-ret2", rj["member"]), NONE, "the member leaves")
ok(wait_until(lambda: fetch_offsets("g-ret2", "raw", [1])[1][0] == -1, 10),
   "once the group is Empty the offset expires")
rc.close()

# The protocol vote.
vc = [Conn() for _ in range(3)]
join_send(vc[0], "g-vote", protos=[("a", b""), ("b", b"")])
first = join_recv(vc[0])
join_send(vc[1], "g-vote", protos=[("b", b""), ("a", b"")])
joined("g-vote", 2)
join_send(vc[2], "g-vote", protos=[("b", b""), ("c", b"")])
joined("g-vote", 3)
join_send(vc[0], "g-vote", member=first["member"],
          protos=[("a", b""), ("b", b"")])
res = [join_recv(c) for c in vc]
is_([x["protocol"] for x in res], ["b"] * 3,
    "vote: 'b' is the only protocol all three support")
is_(heartbeat("g-vote", res[0]["gen"], res[0]["member"]), NONE,
    "the voted group is CompletingRebalance (heartbeats fine)")
for c in vc:
    c.close()

# Static membership: a new member id for an instance fences the old one.
s1 = join("g-static", ver=5, instance="inst-1")
is_(s1["err"], NONE, "static member joins with group.instance.id "
    "(v5, no MEMBER_ID_REQUIRED)")
s2 = join("g-static", ver=5, instance="inst-1")
is_(s2["err"], NONE, "the same instance id joins again with no member id")
ok(s2["member"] != s1["member"], "and gets a new member id")
is_(heartbeat("g-static", s2["gen"], s1["member"], "inst-1", ver=3),
    FENCED_INSTANCE_ID, "the old member id is fenced: FENCED_INSTANCE_ID")

# OffsetDelete on a live consumer group.
oc = Conn()
join_send(oc, "g-od", protos=[("range", sub("raw"))])
od = join_recv(oc)
sync(oc, "g-od", od["gen"], od["member"], [(od["member"], b"")])
commit("g-od", od["gen"], od["member"], [("raw", 0, 1, "")])
body = s16("g-od") + arr([s16("raw") + arr([struct.pack(">i", 0)])])
oc.send(47, 0, body)
r = oc.recv()
err, _ = r.i16(), r.i32()
r.i32()
r.str()
r.i32()
is_((err, r.i32(), r.i16()), (NONE, 0, GROUP_SUBSCRIBED_TO_TOPIC),
    "OffsetDelete of a subscribed topic: GROUP_SUBSCRIBED_TO_TOPIC")
oc.close()

# group.max.size on a broker of its own.
small = Broker(args=ARGS + ["--set", "group.max.size=2"])
H, P = small.host, small.port
mc = [Conn() for _ in range(3)]
join_send(mc[0], "g-max")
m0 = join_recv(mc[0])
join_send(mc[1], "g-max")
joined("g-max", 2)
join_send(mc[0], "g-max", member=m0["member"])
is_((join_recv(mc[0])["err"], join_recv(mc[1])["err"]), (NONE, NONE),
    "two members form their generation (group.max.size=2)")
join_send(mc[2], "g-max")
is_(join_recv(mc[2])["err"], GROUP_MAX_SIZE_REACHED,
    "a third member: GROUP_MAX_SIZE_REACHED")

# Shutdown answers a held JoinGroup at once.
join_send(mc[2], "g-max-2")
first = join_recv(mc[2])
hc = Conn()
join_send(hc, "g-max-2")  # held: waits for the first member to rejoin
joined("g-max-2", 2)
t0 = time.monotonic()
small.signal(signal.SIGTERM)
is_(join_recv(hc)["err"], NOT_COORDINATOR,
    "SIGTERM: a held JoinGroup is answered NOT_COORDINATOR")
is_(small.wait(10), 0, "and the broker exits 0")
ok(time.monotonic() - t0 < 3, "without waiting out the drain "
   "(%.1f s)" % (time.monotonic() - t0))
for c in mc + [hc]:
    c.close()

b.stop()
done()
