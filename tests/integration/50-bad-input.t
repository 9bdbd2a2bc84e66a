#!/usr/bin/python3
# Hostile and malformed input on raw sockets: every bad connection is
# closed (or answered, where Kafka answers), nothing crashes, and other
# connections keep working. Also ApiVersions parsed by hand (v0, v1, v3,
# v99), pipelining, a slow writer, a peer that does not read, many
# connections, the request-size cap and the idle timeout.
import gzip
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from skald import parse_api_versions_v3  # noqa: E402

rng = random.Random(50)
b = Broker()
H, P = b.host, b.port


def conn():
    return socket.create_connection((H, P), 5)


def wait_closed(s, timeout=5.0):
    """Read until EOF. (closed, bytes read). A reset counts as closed."""
    s.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = s.recv(65536)
            if not chunk:
                return True, data
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return True, data
    except socket.timeout:
        pass
    return False, data


# A connection opened first and used after every bad input.
control = conn()
corr = [1000]


def healthy():
    corr[0] += 1
    try:
        control.sendall(kreq(18, 0, corr[0]))
        c, err, keys = parse_api_versions_v0(recv_frame(control))
        good = c == corr[0] and err == 0 and 18 in keys
    except Exception as e:  # noqa: BLE001
        diag("control connection: %r" % e)
        good = False
    try:
        c2, err2, _ = api_versions(H, P, corr=7)
        good = good and c2 == 7 and err2 == 0
    except Exception as e:  # noqa: BLE001
        diag("new connection: %r" % e)
        good = False
    return good and b.alive()


# ------------------------------------------------------------ ApiVersions v0
s = conn()
s.sendall(kreq(18, 0, 42))
c, err, keys = parse_api_versions_v0(recv_frame(s))
s.close()
is_((c, err), (42, 0), "ApiVersions v0: correlation id echoed, error 0")
ok(0 in keys and keys[0][1] >= 7 and keys[0][0] <= 3,
   "Produce advertised with a range covering 3..7 (%s)" % (keys.get(0),))
ok(1 in keys and keys[1][1] >= 11 and keys[1][0] <= 4,
   "Fetch advertised with a range covering 4..11 (%s)" % (keys.get(1),))
ok(18 in keys and keys[18][0] == 0, "ApiVersions min 0 (%s)" %
   (keys.get(18),))
ok(3 in keys and keys[3][0] == 0, "Metadata min 0 (kafka-python probes v0)")
ok(2 in keys and keys[2][0] <= 1 <= keys[2][1],
   "ListOffsets range covers 1 (librdkafka OFFSET_TIME)")
ok(10 in keys and keys[10][0] == 0,
   "FindCoordinator min 0 (librdkafka feature checks)")
want_keys = {0, 1, 2, 3, 10, 18, 19, 20, 32, 33, 37}
is_(sorted(want_keys - set(keys)), [], "every implemented API is listed")
ok(all(lo <= hi and lo >= 0 for lo, hi in keys.values()),
   "every range is sane (0 <= min <= max)")
diag("advertised: " + ", ".join("%d:%d-%d" % (k, v[0], v[1])
                                for k, v in sorted(keys.items())))

# v1 and v2 add throttle_time_ms after the array.
for v in (1, 2):
    s = conn()
    s.sendall(kreq(18, v, 50 + v))
    f = recv_frame(s)
    s.close()
    c, err, k = parse_api_versions_v0(f)
    is_((c, err, k, len(f)), (50 + v, 0, keys, 10 + 6 * len(keys) + 4),
        "ApiVersions v%d: same list plus throttle_time_ms" % v)

# v3: flexible request (header v2), response header still v0.
if keys[18][1] >= 3:
    body = b"\x0bskald-test" + b"\x041.0" + b"\x00"  # compact strings, tags
    s = conn()
    s.sendall(kreq(18, 3, 63, body, flexible=True))
    f = recv_frame(s)
    s.close()
    try:
        c, err, k, thr = parse_api_versions_v3(f)
        is_((c, err, k), (63, 0, keys),
            "ApiVersions v3: flexible body, header v0, same list")
    except Exception as e:  # noqa: BLE001
        ok(False, "ApiVersions v3 response parses (%r)" % e)
else:
    skip("ApiVersions v3 not advertised")

# Too new: error 35 and a v0 body with the ApiVersions range.
s = conn()
s.sendall(kreq(18, 99, 99, b"\x0bskald-test\x041.0\x00", flexible=True))
f = recv_frame(s)
try:
    c, err, k = parse_api_versions_v0(f)
except Exception as e:  # noqa: BLE001
    diag("v99 answer %r does not parse as a v0 body: %r" % (f, e))
    c, err, k = None, None, {}
is_((c, err), (99, 35), "ApiVersions v99: UNSUPPORTED_VERSION (35)")
is_(k.get(18), keys[18], "with a v0 body naming ApiVersions' own range")
s.sendall(kreq(18, 0, 100))
c, err, _ = parse_api_versions_v0(recv_frame(s))
is_((c, err), (100, 0), "and the connection stays usable")
s.close()

# Null client id.
s = conn()
s.sendall(kreq(18, 0, 5, client_id=None))
c, err, _ = parse_api_versions_v0(recv_frame(s))
s.close()
is_((c, err), (5, 0), "a null client_id is accepted")

# ------------------------------------------------------------ framing
# Pipelined requests are answered in order.
s = conn()
s.sendall(b"".join(kreq(18, i % 3, 200 + i) for i in range(20)))
cs = [struct.unpack(">i", recv_frame(s)[:4])[0] for _ in range(20)]
s.close()
is_(cs, list(range(200, 220)), "20 pipelined requests answered in order")

# A request written one byte at a time.
s = conn()
for byte in kreq(18, 0, 77):
    s.send(bytes([byte]))
    time.sleep(0.002)
c, err, _ = parse_api_versions_v0(recv_frame(s))
s.close()
is_((c, err), (77, 0), "a request dribbled byte by byte is answered")

# Two requests split across writes at odd places.
s = conn()
data = kreq(18, 0, 81) + kreq(18, 1, 82)
for i in range(0, len(data), 7):
    s.send(data[i:i + 7])
    time.sleep(0.005)
cs = [struct.unpack(">i", recv_frame(s)[:4])[0] for _ in range(2)]
s.close()
is_(cs, [81, 82], "requests split across writes are reassembled")

# ------------------------------------------------------------ bad input
# Each must end in a closed connection, within a few seconds, with the
# broker alive and other connections unaffected.
INT_MAX = 0x7FFFFFFF
hdr = struct.pack(">hhi", 18, 0, 1) + struct.pack(">h", 4) + b"test"
must_close = [
    ("truncated frame, then EOF",
     struct.pack(">i", 100) + hdr, True),
    ("frame shorter than a request header",
     struct.pack(">i", 3) + b"\x00\x12\x00", False),
    ("zero-length frame", struct.pack(">i", 0), False),
    ("length -1", struct.pack(">i", -1), False),
    ("length INT_MIN", struct.pack(">i", -2 ** 31), False),
    ("length INT_MAX (over socket.request.max.bytes)",
     struct.pack(">i", INT_MAX), False),
    ("length 100 MiB + 1", struct.pack(">i", 104857601) + hdr, False),
    ("unknown api key 9999", kreq(9999, 0, 1), False),
    ("negative api key", kreq(-1, 0, 1), False),
    ("api key not implemented (WriteTxnMarkers 27)", kreq(27, 0, 1), False),
    ("Produce v99", kreq(0, 99, 1, b"\x00" * 40), False),
    ("Metadata v-1", kreq(3, -1, 1), False),
    ("Fetch above its max version",
     kreq(1, keys[1][1] + 1, 1, b"\x00" * 60), False),
    ("client_id longer than the frame",
     struct.pack(">i", 12) + struct.pack(">hhih", 18, 0, 1, 500) + b"ab",
     False),
    ("client_id length -2",
     struct.pack(">i", 10) + struct.pack(">hhih", 18, 0, 1, -2), False),
    ("4 KB of random bytes", bytes([0x7f]) + rng.randbytes(4095), False),
]
for name, data, shut in must_close:
    s = conn()
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    closed, got = wait_closed(s)
    s.close()
    ok(closed, "%s: connection closed" % name)
    if got:
        diag("  (%d bytes answered before closing)" % len(got))
    ok(healthy(), "%s: broker alive, other connections fine" % name)

# Valid header, garbage body: closed, or answered with our correlation id.
garbage = [
    ("Metadata v1 with a 2^31-1 topic array", kreq(3, 1, 11,
                                                   struct.pack(">i", INT_MAX))),
    ("Metadata v4 with a topic name past the end",
     kreq(3, 4, 12, struct.pack(">ih", 1, 30000) + b"abc")),
    ("CreateTopics v0 with a huge array",
     kreq(19, 0, 13, struct.pack(">i", INT_MAX - 1))),
    ("Produce v7 with a record set length past the end",
     kreq(0, 7, 14, struct.pack(">hhi", -1, 1, 1000) +
          struct.pack(">i", 1) + struct.pack(">h", 1) + b"t" +
          struct.pack(">i", 1) + struct.pack(">ii", 0, 10 ** 8))),
    ("Produce v3 with a corrupt record batch",
     kreq(0, 3, 15, struct.pack(">hhi", -1, 1, 1000) +
          struct.pack(">i", 1) + struct.pack(">h", 7) + b"garbage" +
          struct.pack(">i", 1) + struct.pack(">ii", 0, 80) +
          rng.randbytes(80))),
    ("DeleteTopics v1 with a negative array", kreq(20, 1, 16,
                                                   struct.pack(">ii", -5, 0))),
]
# Random bodies for every advertised (key, version).
for key, (lo, hi) in sorted(keys.items()):
    for v in range(lo, hi + 1):
        body = rng.randbytes(rng.randrange(0, 300))
        if key == 1:  # keep a Fetch that happens to parse from long-polling
            body = struct.pack(">ii", -1, 50) + body
        flex = False  # the header still parses; the body is garbage anyway
        garbage.append(("random body for key %d v%d" % (key, v),
                        kreq(key, v, 3000 + key * 100 + v, body, flexible=flex)))

bad = []
for name, data in garbage:
    want_corr = struct.unpack(">i", data[8:12])[0]
    key = struct.unpack(">h", data[4:6])[0]
    s = conn()
    try:
        s.sendall(data)
    except OSError:
        pass
    s.settimeout(5)
    verdict = None
    try:
        f = recv_frame(s, 5)
        if f is None:
            verdict = "closed"
        elif struct.unpack(">i", f[:4])[0] == want_corr:
            verdict = "answered"
        else:
            verdict = "wrong correlation id"
    except (ConnectionResetError, BrokenPipeError):
        verdict = "closed"
    except socket.timeout:
        # Produce with acks=0 that happened to parse gets no answer.
        verdict = "silent" if key == 0 else "no answer, not closed"
    except ValueError as e:
        verdict = "bad response: %s" % e
    s.close()
    if verdict not in ("closed", "answered", "silent") or not healthy():
        bad.append("%s: %s" % (name, verdict))
is_(bad, [], "%d garbage-body requests: each closed or answered, broker "
    "healthy after each" % len(garbage))

# ------------------------------------------------------------ Produce checks
# Hand-made record batches: Kafka's validation rules give these errors.
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
adm = AdminClient({"bootstrap.servers": b.bootstrap})
adm.create_topics([NewTopic("raw", 1, 1)])["raw"].result(15)


def produce_raw(records, partition=0, acks=-1, version=3, topic="raw",
                wait=5.0):
    s = conn()
    s.sendall(kreq(0, version, 77, produce_request(topic, partition, records,
                                                   acks=acks)))
    try:
        f = recv_frame(s, wait)
    except socket.timeout:
        f = "timeout"
    if f is None:
        s.close()
        return "closed"
    if f == "timeout":
        s.close()
        return f
    s.close()
    (r,) = parse_produce_response(f, version)
    return r[2], r[3]


V = [b"a", b"bb", b"ccc"]
good = record_batch(V)
is_(produce_raw(good), (0, 0), "a hand-made batch is stored at offset 0")
is_(produce_raw(good, version=7), (0, 3), "Produce v7: the next at 3")
CORRUPT, INVALID_RECORD = 2, 87
cases = [
    ("bad CRC", record_batch(V, crc=12345), {CORRUPT}),
    ("lastOffsetDelta + 1 != recordsCount",
     record_batch(V, last_offset_delta=5), {CORRUPT, INVALID_RECORD}),
    ("recordsCount larger than the records", record_batch(V, count=7),
     {CORRUPT, INVALID_RECORD}),
    ("no records", record_batch([]), {CORRUPT, INVALID_RECORD}),
    ("a control batch from a client", record_batch(V, attributes=0x20),
     {INVALID_RECORD}),
    ("magic 1 inside Produce v3", record_batch(V, magic=1),
     {CORRUPT, INVALID_RECORD, 43}),
    ("two batches for one partition", good + good,
     {CORRUPT, INVALID_RECORD}),
    ("batchLength past the end", good[:8] + struct.pack(">i", len(good)) +
     good[12:], {CORRUPT, INVALID_RECORD}),
    ("a truncated batch", good[:-2], {CORRUPT, INVALID_RECORD}),
    ("a record length past the batch end",
     record_batch([b"x"], records_blob=zigzag(100) + b"\x00\x00\x00"),
     {CORRUPT, INVALID_RECORD}),
    ("an unknown codec (5)", record_batch(V, attributes=5), {76}),
    ("a producer id with sequence -1",
     record_batch(V, producer_id=5, base_sequence=-1), {INVALID_RECORD}),
]
for name, batch, codes in cases:
    r = produce_raw(batch)
    ok(isinstance(r, tuple) and r[0] in codes,
       "%s: refused with %s (got %r)" % (name, "/".join(map(str, codes)), r))
is_(produce_raw(good, partition=5), (3, -1),
    "a partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION")
is_(produce_raw(good, topic="raw-missing"), (3, -1),
    "Produce does not auto-create: UNKNOWN_TOPIC_OR_PARTITION")
is_(produce_raw(good, acks=2), (21, -1), "acks=2: INVALID_REQUIRED_ACKS")
# Kafka validates the records inside compressed batches too; a batch that
# does not decompress would stop every consumer of the partition. The
# header of each is valid (CRC, counts), so only decompressing finds these.
r = produce_raw(record_batch(V, attributes=1, records_blob=b"not gzip"))
is_(r, (CORRUPT, -1), "gzip batch that does not decompress: CORRUPT_MESSAGE")
r = produce_raw(record_batch(V, attributes=1,
                             records_blob=gzip.compress(b"\x01\x02garbage")))
is_(r, (INVALID_RECORD, -1),
    "gzip batch of malformed records: INVALID_RECORD")
r = produce_raw(record_batch(V, attributes=1, count=4, last_offset_delta=3,
                             records_blob=gzip.compress(
                                 record_batch(V)[61:])))
is_(r, (INVALID_RECORD, -1),
    "gzip batch holding 3 records but declaring 4: INVALID_RECORD")
# With acks=0 there is no response: Kafka closes the connection so that
# the producer notices the error.
is_(produce_raw(record_batch(V, crc=1), acks=0, wait=2), "closed",
    "acks=0 with a bad batch: connection closed")
got = consume(b.bootstrap, "raw", [0], 6)
is_([(m.offset(), m.value()) for m in got], list(enumerate(V + V)),
    "the two good batches are in the log, nothing between them")
ok(healthy(), "broker healthy after the Produce checks")

# ------------------------------------------------------------ load
# A peer that writes a lot and does not read: the broker must neither
# grow without bound nor stall other connections.
N = 10000
s = conn()
sent = threading.Event()


def writer():
    try:
        s.sendall(b"".join(kreq(18, 0, i) for i in range(N)))
    except OSError:
        pass
    sent.set()


t = threading.Thread(target=writer, daemon=True)
t.start()
time.sleep(0.3)
ok(healthy(), "while a peer is not reading, others are served")
cs = []
try:
    while len(cs) < N:
        f = recv_frame(s, 10)
        if f is None:
            break
        cs.append(struct.unpack(">i", f[:4])[0])
except (socket.timeout, OSError) as e:
    diag("reading back: %r" % e)
t.join(10)
s.close()
is_(len(cs), N, "then all %d pipelined answers arrive" % N)
ok(cs == list(range(len(cs))), "in order")

# Many connections at once.
socks = [conn() for _ in range(200)]
for i, x in enumerate(socks):
    x.sendall(kreq(18, 0, i))
answers = []
for i, x in enumerate(socks):
    try:
        answers.append(parse_api_versions_v0(recv_frame(x))[0] == i)
    except Exception:  # noqa: BLE001
        answers.append(False)
    x.close()
ok(all(answers), "200 concurrent connections each answered")

# ------------------------------------------------------------ real client
res = produce(b.bootstrap, "bad-input-after", [{"value": b"still here",
                                                "partition": 0}])
got = consume(b.bootstrap, "bad-input-after", [0], 1)
ok(res[0] and res[0][0] is None and [m.value() for m in got] ==
   [b"still here"], "a real producer and consumer still work")
control.close()
ok(b.alive(), "the broker process is still alive")
log = b.log()
ok("Sanitizer" not in log and "runtime error" not in log,
   "no sanitizer report")
b.stop()

# ------------------------------------------------------------ limits
b2 = Broker(args=["--set", "socket.request.max.bytes=2048",
                  "--set", "connections.max.idle.ms=1000"])
s = socket.create_connection((b2.host, b2.port), 5)
# A valid ApiVersions v0 request padded with trailing bytes, under the cap.
s.sendall(kreq(18, 0, 1, client_id=b"x" * 2000))
f = recv_frame(s)
s.close()
ok(f is not None and parse_api_versions_v0(f)[:2] == (1, 0),
   "a 2 KB request under socket.request.max.bytes=2048 is answered")
s = socket.create_connection((b2.host, b2.port), 5)
s.sendall(struct.pack(">i", 2049))
closed, _ = wait_closed(s)
s.close()
ok(closed, "a 2049-byte length is refused at once (connection closed)")
s = socket.create_connection((b2.host, b2.port), 5)
t0 = time.monotonic()
closed, _ = wait_closed(s, timeout=10)
el = time.monotonic() - t0
s.close()
ok(closed and 0.5 <= el < 9, "an idle connection is closed after "
   "connections.max.idle.ms (%.1fs)" % el)
ok(b2.alive(), "second broker alive")
b2.stop()
done()
