#!/usr/bin/python3
# Lua topic hooks end to end, with real clients: kcat produces to a
# masked topic and a consumer sees masked values; a filtered topic (a
# glob entry) drops exactly the records it should; every on_error policy
# (reject, pass, drop, dead-letter) as a confluent-kafka producer sees
# it; a runaway script is cut off while other topics keep serving; the
# circuit breaker opens visibly; SIGHUP reloads a changed script
# without dropping an open connection; an acks=0 produce a hook refuses
# closes its connection; a compacted topic's hook may give null-key
# records their key; and glob entries give the topics created later
# their partitions and configs.
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

EX = os.path.join(REPO, "scripts", "examples")
POLICY_VIOLATION = 44
INVALID_RECORD = 87


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


tmp = __import__("tempfile").mkdtemp(prefix="skald-hooks-")
BAD = os.path.join(tmp, "bad.lua")
LOOP = os.path.join(tmp, "loop.lua")
SWAP = os.path.join(tmp, "swap.lua")
write(BAD, """
return { on_record = function(rec)
  if rec.value == "bad" then error("refused by the test") end
  return rec
end }
""")
write(LOOP, "return { on_record = function(rec) while true do end end }\n")
write(SWAP, "return { on_record = function(rec) rec.value = 'v1:' .. "
            "rec.value return rec end }\n")
# Uneven work per batch: every tenth record takes much longer, so that
# the two workers would finish a partition's batches out of order if
# nothing kept them in it.
UNEVEN = os.path.join(tmp, "uneven.lua")
write(UNEVEN, """return { on_record = function(rec)
  if rec.value:sub(-1) == "0" then
    local x = 0
    for i = 1, 200000 do x = x + i end
  end
  return rec
end }
""")
KEYIT = os.path.join(tmp, "keyit.lua")
write(KEYIT, "return { on_record = function(rec) rec.key = rec.key or "
             "('k-' .. rec.value) return rec end }\n")


def policy(name, on_error, extra=""):
    return """  "%s":
    hooks:
      - name: check
        script: %s
        on_error: %s
%s""" % (name, BAD, on_error, extra)


config = """
hooks:
  timeout.ms: 50
  memory.mb: 16
  workers: 2
  breaker.failures: 3
  breaker.reset.ms: 600000
topics:
  "payments":
    partitions: 2
    hooks:
      - name: mask-card
        script: %(ex)s/mask_pii.lua
        on_error: reject
        options: { fields: [card, email] }
  "logs.*":
    hooks:
      - name: no-debug
        script: %(ex)s/drop_filter.lua
        options: { pattern: DEBUG }
  "stamped":
    hooks:
      - name: stamp
        script: %(ex)s/stamp_headers.lua
        options: { name: tester }
      - name: route
        script: %(ex)s/router.lua
        options: { match: ERROR, to: stamped.errors }
  "spin":
    hooks:
      - name: spin
        script: %(loop)s
        on_error: reject
  "swap":
    hooks:
      - name: swap
        script: %(swap)s
  "ordered":
    hooks:
      - name: uneven
        script: %(uneven)s
  "audit":
    configs:
      segment.bytes: 1024
      retention.ms: -1
    retention:
      script: %(ex)s/keep_flagged.lua
      options: { flagged: [150] }
  "keyed":
    configs:
      cleanup.policy: compact
    hooks:
      - name: key-it
        script: %(keyit)s
  "keyed.nokey":
    configs:
      cleanup.policy: compact
    hooks:
      - name: stamp
        script: %(ex)s/stamp_headers.lua
  "keyed.plain":
    configs:
      cleanup.policy: compact
  "g.exact":
    partitions: 1
  "g.*":
    partitions: 3
    configs:
      retention.ms: 3600000
      segment.bytes: 1048576
%(p1)s%(p2)s%(p3)s%(p4)s""" % {
    "ex": EX, "loop": LOOP, "swap": SWAP, "keyit": KEYIT, "uneven": UNEVEN,
    "p1": policy("p.reject", "reject"),
    "p2": policy("p.pass", "pass"),
    "p3": policy("p.drop", "drop"),
    "p4": policy("p.dlq", "dead-letter",
                 "        dead_letter_topic: p.dlq.dead\n"),
}

b = Broker(config=config,
           args=["--set", "log.retention.check.interval.ms=200"])
BS = b.bootstrap


def kcat(*args, input=None):
    return run(["kcat", "-b", BS] + list(args), input=input, timeout=30)


def values(topic, partitions=(0,), count=None):
    return [m.value().decode() if m.value() is not None else None
            for m in consume(BS, topic, list(partitions), count=count)]


# --- masking with kcat -------------------------------------------------
docs = [{"card": "4111111111111111", "email": "ann@example.com", "n": 1},
        {"card": "5500000000000004", "name": "bob"}]
r = kcat("-t", "payments", "-P", "-p", "0",
         input="".join(json.dumps(d) + "\n" for d in docs).encode())
is_(r.returncode, 0, "kcat produced to the masked topic")
got = [json.loads(v) for v in values("payments", count=2)]
is_(got, [{"card": "************1111", "email": "****@example.com",
           "n": 1},
          {"card": "************0004", "name": "bob"}],
    "a consumer sees masked values only")
r = kcat("-t", "payments", "-C", "-e", "-p", "0", "-f", "%s\n")
ok("4111111111111111" not in r.stdout.decode() and
   "****@example.com" in r.stdout.decode(),
   "kcat reads masked values back too")
res = produce(BS, "payments", [{"value": b"not json", "partition": 1}])
ok(res[0][0] is not None and res[0][0].code() == POLICY_VIOLATION,
   "a value the mask cannot parse is rejected (on_error: reject): %s"
   % (res[0][0],))

# --- a filtered topic from a glob ---------------------------------------
lines = ["a DEBUG", "b", "c DEBUG x", "d", "e", "DEBUG"]
r = kcat("-t", "logs.app", "-P", "-p", "0",
         input="".join(l + "\n" for l in lines).encode())
is_(r.returncode, 0, "kcat produced to logs.app (created, hooked by the "
                     "logs.* glob)")
is_(values("logs.app"), ["b", "d", "e"],
    "the filter dropped exactly the DEBUG records")

# A partition's batches are written in the order they came, though two
# workers run them and some take far longer than others.
sent = ["m%03d" % i for i in range(300)]
res = produce(BS, "ordered", [{"value": v.encode(), "partition": 0}
                              for v in sent],
              conf={"linger.ms": 0, "batch.num.messages": 1})
ok(all(x and x[0] is None for x in res), "300 one-record batches produced "
   "to a topic whose hook takes uneven time")
is_(values("ordered", count=300), sent,
    "they are written, and read back, in the order sent")
ok(all(x[2] == i for i, x in enumerate(res)),
   "each acknowledged at the offset of its place in that order")

# An idempotent producer's batch through the filter: what is written keeps
# the producer id, epoch and sequence, and the batch's whole offset range,
# so sequences still match offsets as sent (a dropped record's offset is
# a gap, as after compaction).
kcat("-L", "-t", "logs.idem")  # metadata creates it (auto.create)
idem = socket.create_connection((b.host, b.port), 5)
idem.sendall(kreq(0, 3, 1, produce_request("logs.idem", 0, record_batch(
    [b"a", b"DEBUG b", b"c", b"DEBUG d", b"e"], producer_id=4242,
    producer_epoch=3, base_sequence=17), acks=1)))
r = parse_produce_response(recv_frame(idem, 10))
ok(r and r[0][2] == 0 and r[0][3] == 0, "an idempotent batch produced to a "
   "filtered topic (%s)" % r)
with open(os.path.join(b.data_dir, "logs.idem-0",
                       "%020d.log" % 0), "rb") as f:
    head = f.read(61)
lod, = struct.unpack_from(">i", head, 23)
pid, epoch, seq, count = struct.unpack_from(">qhii", head, 43)
is_((pid, epoch, seq, lod, count), (4242, 3, 17, 4, 3),
    "written: producer id, epoch and base sequence as sent, lastOffsetDelta "
    "4 (five offsets), three records")
idem.sendall(kreq(0, 3, 2, produce_request("logs.idem", 0, record_batch(
    [b"f"], producer_id=4242, producer_epoch=3, base_sequence=22), acks=1)))
r = parse_produce_response(recv_frame(idem, 10))
ok(r and r[0][2] == 0 and r[0][3] == 5,
   "the next batch (sequence 22) lands at offset 5 (%s)" % r)
idem.close()
r = kcat("-t", "logs.idem", "-C", "-e", "-p", "0", "-f", "%o:%s\n")
is_(r.stdout.decode().split(), ["0:a", "2:c", "4:e", "5:f"],
    "a consumer reads the kept records at their offsets as sent")

# --- a chain: stamp, and route a copy -----------------------------------
res = produce(BS, "stamped", [{"value": b"ok"}, {"value": b"ERROR disk"}])
ok(all(x[0] is None for x in res), "produced to a chain of two hooks")
msgs = consume(BS, "stamped", [0], count=2)
ok(all(dict(m.headers() or []).get("stamped-by") == b"tester"
       for m in msgs), "every record stamped")
copies = consume(BS, "stamped.errors", [0], count=1)
ok(len(copies) == 1 and copies[0].value() == b"ERROR disk" and
   dict(copies[0].headers()).get("routed-from") == b"stamped",
   "the router wrote a copy to stamped.errors")

# --- on_error policies with a real producer -----------------------------
def produce_one_batch(topic, values):
    """Both records in one batch, so the policy applies to both: metadata
    is fetched first and linger.ms holds the batch until both are in."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": BS, "linger.ms": 500})
    p.list_topics(topic, timeout=10)
    out = [None] * len(values)

    def cb(i):
        return lambda err, msg: out.__setitem__(i, (err,))
    for i, v in enumerate(values):
        p.produce(topic, v, partition=0, on_delivery=cb(i))
    p.flush(30)
    return out


for topic in ("p.reject", "p.pass", "p.drop", "p.dlq"):
    res[:] = produce_one_batch(topic, [b"good1", b"bad"])
    if topic == "p.reject":
        ok(all(x[0] is not None and x[0].code() == POLICY_VIOLATION
               for x in res), "reject: the produce fails with "
                              "POLICY_VIOLATION")
    else:
        ok(all(x[0] is None for x in res),
           "%s: the produce succeeds" % topic)
is_(values("p.reject"), [], "reject: nothing written")
is_(values("p.pass"), ["good1", "bad"], "pass: the original written")
is_(values("p.drop"), [], "drop: nothing written")
is_(values("p.dlq"), [], "dead-letter: nothing in the topic itself")
dead = consume(BS, "p.dlq.dead", [0], count=2)
h = dict(dead[1].headers() or []) if len(dead) == 2 else {}
ok([m.value() for m in dead] == [b"good1", b"bad"] and
   h.get("skald.hook") == b"check" and h.get("skald.reason") == b"error" and
   b"refused by the test" in h.get("skald.error", b"") and
   h.get("skald.topic") == b"p.dlq",
   "dead-letter: the originals, with headers saying why: %s" % h)

# --- a runaway script: cut off, others keep serving ---------------------
t0 = time.time()
res = produce(BS, "spin", [{"value": b"x"}])
ok(res[0][0] is not None and res[0][0].code() == POLICY_VIOLATION,
   "while true do end is cut off and rejected")
ok(time.time() - t0 < 10, "promptly (%.2fs)" % (time.time() - t0))
res = produce(BS, "plain", [{"value": b"fine"}])
ok(res[0][0] is None, "an unhooked topic keeps serving")
for i in range(3):
    produce(BS, "spin", [{"value": b"x"}])
ok(wait_until(lambda: "circuit breaker open" in b.log(), 10),
   "after breaker.failures failures the breaker opens, in the log")
t0 = time.time()
res = produce(BS, "spin", [{"value": b"x"}])
ok(res[0][0] is not None and time.time() - t0 < 5,
   "the open breaker answers with on_error without running the script")

# --- a retention script --------------------------------------------------
res = produce(BS, "audit", [{"value": b"record %03d" % i + b"." * 60}
                            for i in range(300)],
              conf={"linger.ms": 0, "batch.num.messages": 1})
ok(all(x[0] is None for x in res), "300 records produced to audit")
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
wm = Consumer({"bootstrap.servers": BS, "group.id": "wm"})


def low():
    return wm.get_watermark_offsets(TopicPartition("audit", 0), timeout=10,
                                    cached=False)[0]


def bases():
    d = os.path.join(b.data_dir, "audit-0")
    return sorted(int(n[:20]) for n in os.listdir(d)
                  if len(n) == 24 and n.endswith(".log"))


def settled():
    lo, segs = low(), bases()
    return (0 < lo <= 150 and segs and segs[0] == lo and len(segs) > 1 and
            segs[1] > 150)


ok(wait_until(settled, 15),
   "the retention script deleted every segment before the one holding "
   "flagged offset 150, though retention.ms is -1 (start %d, segments %s)"
   % (low(), bases()[:3]))
lo = low()
time.sleep(0.6)
is_(low(), lo, "and no further: that segment and later ones are kept")
wm.close()

# --- SIGHUP reload, on one open connection ------------------------------
sock = socket.create_connection((b.host, b.port), 5)


def raw_produce(value, corr):
    sock.sendall(kreq(0, 3, corr, produce_request(
        "swap", 0, record_batch([value]), acks=1)))
    return parse_produce_response(recv_frame(sock, 10))


r1 = raw_produce(b"a", 1)
ok(r1 and r1[0][2] == 0, "produced on a raw connection before the reload")
write(SWAP, "return { on_record = function(rec) rec.value = 'v2:' .. "
            "rec.value return rec end\n")  # a syntax error
b.signal(signal.SIGHUP)
ok(wait_until(lambda: "previous version keeps running" in b.log(), 10),
   "a script that fails to compile is reported at reload")
r2 = raw_produce(b"b", 2)
write(SWAP, "return { on_record = function(rec) rec.value = 'v2:' .. "
            "rec.value return rec end }\n")
b.signal(signal.SIGHUP)
ok(wait_until(lambda: "reloaded" in b.log(), 10), "a good reload")
r3 = raw_produce(b"c", 3)
ok(r2 and r2[0][2] == 0 and r3 and r3[0][2] == 0,
   "the same connection keeps working across both reloads")
is_(values("swap", count=3), ["v1:a", "v1:b", "v2:c"],
    "the old version ran until the good reload, the new one after")

# --- the same reload through the admin API --------------------------------
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402


def http_admin(method, path):
    req = urllib.request.Request(
        "http://%s:%d%s" % (b.host, b.admin_port, path), method=method,
        data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


write(SWAP, "return { on_record = function(rec) rec.value = 'v3:' .. "
            "rec.value return rec end\n")  # a syntax error
st, hdrs, body = http_admin("POST", "/v1/hooks/reload")
err = json.loads(body).get("error", "") if body.startswith(b"{") else ""
ok(st == 422 and os.path.basename(SWAP) in err and
   "previous version keeps running" in err,
   "POST /v1/hooks/reload of a broken script: 422 naming it (%d %s)" %
   (st, body[:200]))
r4 = raw_produce(b"d", 4)
write(SWAP, "return { on_record = function(rec) rec.value = 'v3:' .. "
            "rec.value return rec end }\n")
st, hdrs, body = http_admin("POST", "/v1/hooks/reload")
ok(st == 200 and json.loads(body).get("reloaded") is True,
   "POST /v1/hooks/reload of a good script: 200 (%d %s)" % (st, body))
r5 = raw_produce(b"e", 5)
ok(r4 and r4[0][2] == 0 and r5 and r5[0][2] == 0,
   "the connection keeps working across admin reloads")
is_(values("swap", count=5), ["v1:a", "v1:b", "v2:c", "v2:d", "v3:e"],
    "v2 ran until the admin reload, v3 after")
st, hdrs, body = http_admin("GET", "/v1/hooks/reload")
ok(st == 405 and hdrs.get("Allow") == "POST",
   "GET /v1/hooks/reload: 405, Allow: POST (%d %r)" % (st, hdrs.get("Allow")))

# --- a reload compiles off the event loop ------------------------------------
# A top level that never returns is cut off after timeout.ms + 1 s; all
# that time the loop serves, and the batch runs on the version in force.
import threading  # noqa: E402

write(SWAP, "while true do end\n")
mark = len(b.log())
answers = []
th = threading.Thread(target=lambda: answers.append(
    http_admin("POST", "/v1/hooks/reload")))
th.start()
ok(wait_until(lambda: "admin /v1/hooks/reload: reloading hooks"
              in b.log()[mark:], 5), "the admin reload started")
st, hdrs, body = http_admin("GET", "/metrics")
ok(st == 200 and b"skald_" in body and not answers,
   "the admin listener serves /metrics while the reload waits (%d, "
   "reload answered: %s)" % (st, bool(answers)))
r6 = raw_produce(b"f", 6)
ok(r6 and r6[0][2] == 0 and "ran past" not in b.log()[mark:],
   "a produce is answered while the reload is still compiling")
th.join(15)
st, hdrs, body = answers[0] if answers else (0, {}, b"")
ok(st == 422 and b"timeout" in body and b"keeps running" in body,
   "the reload then fails, cut off at its budget (%d %s)" % (st, body[:200]))

# Reloads asked for while one runs follow it; every caller is answered.
write(SWAP, "return { on_record = function(rec) rec.value = 'v4:' .. "
            "rec.value return rec end }\n")
answers = []
ths = [threading.Thread(target=lambda: answers.append(
    http_admin("POST", "/v1/hooks/reload"))) for _ in range(3)]
for t in ths:
    t.start()
b.signal(signal.SIGHUP)
for t in ths:
    t.join(15)
ok(len(answers) == 3 and all(a[0] == 200 for a in answers),
   "three concurrent admin reloads and a SIGHUP: each answered 200 (%s)" %
   [a[0] for a in answers])
r7 = raw_produce(b"g", 7)
is_(values("swap", count=7)[5:], ["v3:f", "v4:g"],
    "v3 ran while the looping script compiled, v4 after the reloads")

# --- a hooked batch's records are checked on the hook worker ---------------
# The loop checks a hooked batch's header and CRC; its records are checked
# where they are decoded for the hooks, with the codes the loop would give.
import gzip  # noqa: E402

V = [b"a", b"bb", b"ccc"]
CORRUPT = 2


def raw_batch(batch, corr):
    sock.sendall(kreq(0, 3, corr, produce_request("swap", 0, batch,
                                                  acks=1)))
    r = parse_produce_response(recv_frame(sock, 10))
    return r[0][2] if r else None


bad = [
    ("recordsCount larger than the records",
     record_batch(V, count=4, last_offset_delta=3), INVALID_RECORD),
    ("recordsCount of 2^31-1 over 3 records",
     record_batch(V, count=2**31 - 1, last_offset_delta=2**31 - 2),
     INVALID_RECORD),
    ("a record length past the batch end",
     record_batch([b"x"], records_blob=zigzag(100) + b"\x00\x00\x00"),
     INVALID_RECORD),
    ("offset deltas not 0, 1, 2",
     record_batch(V, records_blob=record_batch(V[:1])[61:] * 3),
     INVALID_RECORD),
    ("gzip that does not decompress",
     record_batch(V, attributes=1, records_blob=b"not gzip"), CORRUPT),
    ("gzip of malformed records",
     record_batch(V, attributes=1,
                  records_blob=gzip.compress(b"\x01\x02garbage")),
     INVALID_RECORD),
]
for k, (name, batch, code) in enumerate(bad):
    got = raw_batch(batch, 100 + k)
    is_(got, code, "hooked topic, %s: refused with %d" % (name, code))
is_(raw_batch(record_batch(V), 120), 0,
    "the connection then produces a good batch")
is_(raw_batch(record_batch(V, attributes=1,
                           records_blob=gzip.compress(
                               record_batch(V)[61:])), 121), 0,
    "and a good gzip batch, decompressed once, on the worker")
sock.close()

# --- acks=0: a refusal closes the connection ------------------------------
def acks0(topic, value, client):
    s = socket.create_connection((b.host, b.port), 5)
    s.sendall(kreq(0, 3, 1, produce_request(topic, 0, record_batch([value]),
                                            acks=0), client_id=client))
    # ApiVersions after it: answered unless the connection was closed.
    s.sendall(kreq(18, 0, 2, client_id=client))
    try:
        frame = recv_frame(s, 10)
    except socket.timeout:
        frame = "timeout"
    s.close()
    return frame


ok(isinstance(acks0("p.reject", b"good", b"acks0-client"), bytes),
   "acks=0 accepted by the hook: the connection stays open")
is_(acks0("p.reject", b"bad", b"acks0-client"), None,
    "acks=0 refused by a hook: the broker closes the connection")
is_(acks0("p.reject", b"bad", b"acks0-client"), None,
    "... every time")
is_(b.log().count("client 'acks0-client'"), 1,
    "the refusal is logged once per client.id")
is_(values("p.reject"), ["good"], "only the accepted acks=0 record is "
                                  "written")

# --- a compacted topic: the null-key check comes after the hooks ----------
res = produce(BS, "keyed", [{"value": b"a", "partition": 0},
                            {"value": b"b", "key": b"own", "partition": 0}])
ok(all(x[0] is None for x in res),
   "a compacted topic takes null-key records its hook gives a key: %s"
   % (res,))
is_([m.key() for m in consume(BS, "keyed", [0], count=2)],
    [b"k-a", b"own"], "the keys the hook set are stored")
res = produce(BS, "keyed.nokey", [{"value": b"a", "partition": 0}])
ok(res[0][0] is not None and res[0][0].code() == INVALID_RECORD,
   "hooks that leave the key null: refused after them (%s)" % (res[0][0],))
res = produce(BS, "keyed.plain", [{"value": b"a", "partition": 0}])
ok(res[0][0] is not None and res[0][0].code() == INVALID_RECORD,
   "an unhooked compacted topic still refuses a null key")

# --- glob entries: partitions and configs of topics created later --------
from confluent_kafka.admin import (AdminClient, ConfigResource,  # noqa
                                   NewTopic)
admin = AdminClient({"bootstrap.servers": BS})


def nparts(topic):
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def config(topic, key):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    f = admin.describe_configs([res])[res]
    return f.result(10)[key].value


r = kcat("-t", "g.auto", "-P", "-p", "0", input=b"x\n")
is_(r.returncode, 0, "kcat auto-created g.auto")
is_(nparts("g.auto"), 3, "an auto-created topic takes its glob's partitions")
is_(config("g.auto", "retention.ms"), "3600000",
    "... and its glob's configs")
res = admin_result(admin.create_topics([NewTopic(
    "g.asked", num_partitions=5, replication_factor=1,
    config={"retention.ms": "1000"})]))
ok(res["g.asked"] is None, "CreateTopics g.asked (%s)" % res["g.asked"])
is_(nparts("g.asked"), 5, "partitions the request gives win")
is_(config("g.asked", "retention.ms"), "1000", "so do its configs")
is_(config("g.asked", "segment.bytes"), "1048576",
    "the glob's other configs still apply")
res = admin_result(admin.create_topics([NewTopic("g.dflt",
                                                 num_partitions=-1)]))
ok(res["g.dflt"] is None, "CreateTopics with the default partitions (%s)"
   % res["g.dflt"])
is_(nparts("g.dflt"), 3, "the default is the glob's")
is_(nparts("g.exact"), 1, "an exact entry beats the glob")
is_(config("g.exact", "retention.ms"), config("plain", "retention.ms"),
    "and takes none of its configs")

# Stopping while a reload compiles: its caller is answered, nothing leaks.
write(SWAP, "while true do end\n")
mark = len(b.log())
answers = []


def reload_while_stopping():
    try:
        answers.append(http_admin("POST", "/v1/hooks/reload"))
    except Exception as e:  # noqa: B902
        answers.append((0, {}, repr(e)))


th = threading.Thread(target=reload_while_stopping)
th.start()
wait_until(lambda: "reloading hooks" in b.log()[mark:], 5)
b.signal(signal.SIGHUP)  # queued behind it
b.stop(name="stops cleanly with a reload compiling and one queued")
th.join(15)
ok(answers and answers[0][0] == 503 and b"stopping" in answers[0][2],
   "the waiting admin call is answered 503 (%s)" %
   (answers[0] if answers else None,))
done()
