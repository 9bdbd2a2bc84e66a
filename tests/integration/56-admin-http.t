#!/usr/bin/python3
# The admin HTTP listener (admin.listener) with real HTTP clients:
# GET /metrics answers Prometheus text 0.0.4 that parses (every sample
# line is name{labels} value, every family has # HELP and # TYPE) and
# includes skald_build_info; HEAD works; other methods get 405 with
# Allow; unknown paths a 404 JSON body; request bodies are refused;
# keep-alive works; a hooked topic's skald_hook_* series rise after a
# produce; an empty admin.listener opens nothing; a taken port stops the
# start naming admin.listener and the address; port 0 and [::1] bind;
# Kafka keeps serving (and the broker stops cleanly) while an HTTP
# client holds an idle connection.
import http.client
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EX = os.path.join(REPO, "scripts", "examples")
TOPIC = "metered"

b = Broker(config="""
topics:
  "%s":
    partitions: 1
    hooks:
      - name: no-debug
        script: %s/drop_filter.lua
        options: { pattern: DEBUG }
""" % (TOPIC, EX))
ok(wait_until(lambda: "admin listening on 127.0.0.1:%d\n" % b.admin_port
              in b.log(), 5),
   "the log says where the admin listener is (port %d)" % b.admin_port)


def request(method, path, body=None, headers=None, port=None, conn=None):
    """(status, {header: value} lower-cased, body bytes)."""
    c = conn or http.client.HTTPConnection(b.host, port or b.admin_port,
                                           timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if conn is None:
        c.close()
    return r.status, hdrs, data


# ------------------------------------------------------------ GET /metrics
b.metrics()  # waits for the listener (it opens just after Kafka's)
status, hdrs, body = request("GET", "/metrics")
is_(status, 200, "GET /metrics: 200")
is_(hdrs.get("content-type"), PROM_TYPE, "... Content-Type is text 0.0.4")
text = body.decode("utf-8")
try:
    samples = parse_metrics(text)
    ok(samples, "... every line is a comment or name{labels} value (%d "
       "samples)" % len(samples))
except ValueError as e:
    samples = []
    ok(False, "... every line is a comment or name{labels} value: %s" % e)

helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
ok(set(helps) == set(types) and
   all(t in ("counter", "gauge", "histogram") for t in types.values()),
   "... each family has one # HELP and one # TYPE (%d families)" %
   len(types))


def family(name):
    """The family a sample belongs to (histograms: name_bucket etc.)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return name


orphans = sorted({n for n, _, _ in samples if family(n) not in types})
is_(orphans, [], "... and every sample belongs to a declared family")
# The # TYPE line comes before the family's samples.
order_ok = True
seen = set()
for line in text.splitlines():
    m = re.match(r"# TYPE (\S+) ", line)
    if m:
        seen.add(m.group(1))
    elif line and not line.startswith("#"):
        order_ok &= family(line.split("{")[0].split(" ")[0]) in seen
ok(order_ok, "... and is declared before its samples")

version = run([SKALD, "--version"]).stdout.decode().split()[-1]
is_(metric(text, "skald_build_info", {"version": version}), 1.0,
    "skald_build_info{version=\"%s\"} 1" % version)
is_(types.get("skald_build_info"), "gauge", "... a gauge")
start = metric(text, "skald_start_time_seconds")
ok(start and abs(start - time.time()) < 600,
   "skald_start_time_seconds is about now (%r)" % start)
is_(metric(b.metrics(), "skald_build_info"), 1.0,
    "Broker.metrics() and metric() read it too")

# ------------------------------------------------------------ HEAD
status, hdrs, body = request("HEAD", "/metrics")
is_((status, hdrs.get("content-type"), body), (200, PROM_TYPE, b""),
    "HEAD /metrics: 200, the same Content-Type, no body")
ok(int(hdrs.get("content-length", "0")) > 100,
   "... with the body's Content-Length (%s)" % hdrs.get("content-length"))

# ------------------------------------------------------------ errors
for method, body in (("POST", None), ("POST", b"x=1"), ("PUT", b"abc"),
                     ("DELETE", None)):
    status, hdrs, data = request(method, "/metrics", body=body)
    is_((status, hdrs.get("allow")), (405, "GET, HEAD"),
        "%s /metrics%s: 405 with Allow: GET, HEAD" %
        (method, " with a body" if body else ""))

status, hdrs, data = request("GET", "/nope")
is_((status, hdrs.get("content-type")), (404, "application/json"),
    "GET /nope: 404, JSON")
try:
    doc = json.loads(data)
except ValueError:
    doc = data
is_(doc, {"error": "no such path: /nope"}, "... saying which path")
for path in ("/", "/metrics/", "/metricsx", "/v1/topics"):
    is_(request("GET", path)[0], 404, "GET %s: 404" % path)
status, _, data = request("GET", "/%22%5c%0a%ff")
try:
    doc = json.loads(data)
except ValueError:
    doc = None
ok(status == 404 and doc and doc["error"].startswith("no such path: /\"\\"),
   "a path with quotes, backslashes and control bytes still gives valid "
   "JSON (%r)" % data[:80])

status, _, data = request("GET", "/metrics", body=b"x" * 100000)
is_(status, 413, "GET /metrics with a request body: 413, unread")
try:
    status = request("GET", "/metrics", headers={"X-Big": "y" * 100000})[0]
except (http.client.HTTPException, OSError) as e:
    status = repr(e)
ok(status != 200, "headers beyond the connection memory limit are refused "
   "(%s)" % status)
is_(request("GET", "/metrics")[0], 200, "... and the listener still answers")

# ------------------------------------------------------------ keep-alive
c = http.client.HTTPConnection(b.host, b.admin_port, timeout=10)
r1 = request("GET", "/metrics", conn=c)
r2 = request("HEAD", "/metrics", conn=c)
r3 = request("GET", "/nope", conn=c)
is_((r1[0], r2[0], r3[0]), (200, 200, 404),
    "three requests on one kept-alive connection")
c.close()

# ------------------------------------------------------------ hook series
labels = {"topic": TOPIC, "hook": "no-debug"}
before = metric(b.metrics(), "skald_hook_calls_total", labels) or 0.0
res = produce(b.bootstrap, TOPIC,
              [{"value": v} for v in (b"INFO one", b"DEBUG two",
                                      b"INFO three", b"DEBUG four")])
ok(all(r and r[0] is None for r in res), "produced 4 records to %s" % TOPIC)


def hook_counts():
    t = b.metrics()
    return (metric(t, "skald_hook_calls_total", labels),
            metric(t, "skald_hook_records_in_total", labels),
            metric(t, "skald_hook_records_dropped_total", labels),
            metric(t, "skald_hook_records_out_total", labels))


wait_until(lambda: (hook_counts()[1] or 0) >= 4, 10)
calls, rin, dropped, rout = hook_counts()
ok(calls is not None and calls > before,
   "skald_hook_calls_total{topic,hook} rose (%r -> %r)" % (before, calls))
is_((rin, dropped, rout), (4.0, 2.0, 2.0),
    "records in, dropped and out as the hook saw them")
got = consume(b.bootstrap, TOPIC, [0], count=2, timeout=15)
is_([m.value() for m in got], [b"INFO one", b"INFO three"],
    "... and the log holds what it kept")

# ------------------------------------------------------------ idle client
# A client that connects and sends nothing, and one that sends half a
# request: neither stops Kafka nor /metrics for anyone else.
idle = socket.create_connection((b.host, b.admin_port), 5)
slow = socket.create_connection((b.host, b.admin_port), 5)
slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
t0 = time.monotonic()
_, _, keys = api_versions(b.host, b.port)
ok(18 in keys, "Kafka answers ApiVersions while HTTP clients sit idle")
res = produce(b.bootstrap, TOPIC, [{"value": b"INFO five"}])
ok(res and res[0] and res[0][0] is None, "... and Produce")
is_(request("GET", "/metrics")[0], 200, "... and /metrics answers others")
ok(time.monotonic() - t0 < 10, "... at once (%.1fs)" %
   (time.monotonic() - t0))
# The broker stops cleanly with both still open.
t0 = time.monotonic()
b.stop(name="the broker exits 0 on SIGTERM with idle HTTP connections open")
ok(time.monotonic() - t0 < 5, "... promptly (%.1fs)" % (time.monotonic() - t0))
idle.settimeout(5)
try:
    closed = idle.recv(1) == b""
except OSError:
    closed = True
ok(closed, "... and the idle connection is closed")
idle.close()
slow.close()

# ------------------------------------------------------------ empty
off = Broker(args=["--set", "admin.listener="])
try:
    socket.create_connection((off.host, off.admin_port), 2).close()
    refused = False
except ConnectionRefusedError:
    refused = True
ok(refused, "admin.listener= (empty): nothing listens on the admin port")
ok("admin listening" not in off.log(), "... and no admin listener is logged")
_, _, keys = api_versions(off.host, off.port)
ok(18 in keys, "... while Kafka serves")
off.stop()

# ------------------------------------------------------------ taken port
first = Broker()
second = Broker(args=["--set", "admin.listener=127.0.0.1:%d" %
                      first.admin_port], start=False)
try:
    second.start()
    started = True
except Exception:
    started = False
ok(not started, "a second broker on the same admin port does not start")
second.wait(10)
ok(second.proc.returncode not in (None, 0),
   "... it exits non-zero (%r)" % second.proc.returncode)
want = "admin.listener 127.0.0.1:%d: Address already in use" % \
    first.admin_port
if not ok(want in second.last_log(), "... its stderr says '%s'" % want):
    diag(second.last_log()[-1500:])
try:
    socket.create_connection((second.host, second.port), 2).close()
    kafka_left = True
except OSError:
    kafka_left = False
ok(not kafka_left, "... and its Kafka listener was closed again")
is_(metric(first.metrics(), "skald_build_info"), 1.0,
    "the first broker still serves /metrics")
first.stop()

# ------------------------------------------------------------ port 0, IPv6
zero = Broker(args=["--set", "admin.listener=127.0.0.1:0"])
m = wait_until(lambda: re.search(r"admin listening on 127\.0\.0\.1:(\d+)",
                                 zero.log()), 5)
port = int(m.group(1)) if m else 0
ok(port > 0, "admin.listener with port 0 logs the port bound (%d)" % port)
if port:
    is_(request("GET", "/metrics", port=port)[0], 200,
        "... and serves /metrics there")
zero.stop()

try:
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s6.bind(("::1", 0))
    p6 = s6.getsockname()[1]
    s6.close()
except OSError:
    p6 = None
if p6 is None:
    skip("no IPv6 loopback", 2)
else:
    v6 = Broker(args=["--set", "admin.listener=[::1]:%d" % p6])
    ok(wait_until(lambda: "admin listening on [::1]:%d" % p6 in v6.log(), 5),
       "admin.listener [::1]:%d is logged in brackets" % p6)
    c = http.client.HTTPConnection("::1", p6, timeout=10)
    is_(request("GET", "/metrics", conn=c)[0], 200, "... and serves /metrics")
    c.close()
    v6.stop()

# ------------------------------------------------------------ config errors
for value, msg in (("127.0.0.1", "expected HOST:PORT"),
                   ("127.0.0.1:65536", "port must be in [0, 65535]"),
                   ("http://127.0.0.1:9644", "expected HOST:PORT"),
                   ("::1:9644", "IPv6 address goes in brackets")):
    r = run([SKALD, "--set", "admin.listener=" + value, "--check-config"])
    err = r.stderr.decode(errors="replace")
    ok(r.returncode != 0 and "admin.listener" in err and msg in err,
       "admin.listener=%s is refused: %s" % (value, err.strip()[:120]))
r = run([SKALD, "--check-config"], env={"SKALD_ADMIN_LISTENER": "nope"})
ok(r.returncode != 0 and b"SKALD_ADMIN_LISTENER" in r.stderr,
   "a bad SKALD_ADMIN_LISTENER is refused naming it")
r = run([SKALD, "--help"])
ok(re.search(rb"^  admin\.listener +127\.0\.0\.1:9644 ", r.stdout, re.M),
   "--help lists admin.listener with its default 127.0.0.1:9644")
done()
