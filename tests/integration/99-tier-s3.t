#!/usr/bin/python3
# Tiered storage with the tier-s3 plugin against s3rver (a local
# S3-compatible server, tests/s3) and real clients: produce enough to roll
# many segments, wait for them to be uploaded, see local segments removed
# and objects in the bucket, consume everything from offset 0 byte-exact;
# segments above multipart_threshold go up as multipart uploads. The
# broker writes with virtual-host addressing (BUCKET.s3.localhost), then
# restarts with path-style addressing and reads the same objects. Then
# s3rver stops: producing still works, copies fail (logged), remote reads
# fail retriably, nothing is lost; s3rver comes back and offload resumes.
# Finally a missing bucket is reported with S3's error code.
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "s3"))
from skald import *  # noqa: E402,F403
from sigv4_proxy import SigV4Proxy  # noqa: E402

TIER_S3 = os.path.join(BUILD, "plugins", "tier-s3.so")
S3RVER = os.path.join(REPO, "tests", "s3", "node_modules", ".bin", "s3rver")
if not os.path.exists(TIER_S3):
    skip_all("no %s (make plugins)" % TIER_S3)
if not os.path.exists(S3RVER):
    skip_all("no s3rver (scripts/deps.sh installs it in tests/s3)")

tmp = tempfile.mkdtemp(prefix="skald-tier-s3-")
import atexit  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)
BUCKET = "tier"
PREFIX = "skald/"


def die_with_parent():
    # A test that dies of an uncaught exception skips atexit: s3rver
    # must not outlive it (PR_SET_PDEATHSIG).
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class S3rver:
    """s3rver on a free loopback port, its objects under tmp/s3, behind a
    proxy that checks every request's SigV4 signature (s3rver does not):
    the broker talks to the proxy, on self.port."""

    def __init__(self):
        self.dir = os.path.join(tmp, "s3")
        self.upstream = free_port()
        self.proxy = SigV4Proxy(self.upstream, secret="S3RVER")
        self.port = self.proxy.port
        self.proc = None
        self.runs = 0
        atexit.register(self.stop)

    def start(self):
        self.runs += 1
        self.log_path = os.path.join(tmp, "s3rver.%d.log" % self.runs)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [S3RVER, "-d", self.dir, "-a", "127.0.0.1",
                 "-p", str(self.upstream), "--service-endpoint", "localhost",
                 "--configure-bucket", BUCKET,
                 "--configure-bucket", "skald-archive"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                preexec_fn=die_with_parent,
                # s3rver's continuation tokens use DES, legacy in OpenSSL 3
                env=dict(os.environ,
                         NODE_OPTIONS="--openssl-legacy-provider"))

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.upstream),
                                         0.5).close()
                return True
            except OSError:
                return False
        if not wait_until(up, 20):
            bail_out("s3rver did not start:\n" + self.log())
        self.proxy.start()

    def stop(self):
        self.proxy.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self):
        out = []
        for i in range(1, self.runs + 1):
            try:
                with open(os.path.join(tmp, "s3rver.%d.log" % i)) as f:
                    out.append(f.read())
            except OSError:
                pass
        return "".join(out)


s3 = S3rver()
s3.start()


def config(path_style, bucket=BUCKET):
    host = "127.0.0.1" if path_style else "s3.localhost"
    return """\
remote.log.manager.task.interval.ms: 100
log.retention.check.interval.ms: 300
plugins:
  - path: %s
    config:
      endpoint: http://%s:%d
      bucket: %s
      region: us-east-1
      access_key: S3RVER
      secret_key: S3RVER
      path_style: %s
      prefix: %s
      multipart_threshold: 65536
      part_size: 16384
      connect_timeout_ms: 1000
      timeout_ms: 10000
      list_page_size: 7
remote.log.orphan.sweep.interval.ms: 1000
remote.log.orphan.grace.ms: 60000
storage:
  tier: tier-s3
topics:
  archive:
    partitions: 1
    configs:
      remote.storage.enable: "true"
      local.retention.ms: "0"
      segment.bytes: "4096"
  big:
    partitions: 1
    configs:
      remote.storage.enable: "true"
      local.retention.ms: "0"
      segment.bytes: "200000"
""" % (TIER_S3, host, s3.port, bucket, "true" if path_style else "false",
       PREFIX)


b = Broker(config=config(path_style=False))
ok("[tier-s3] objects in bucket tier under skald/ at http://s3.localhost:%d "
   "(virtual-host addressing" % s3.port in b.log(), "tier-s3 loaded")
ok("remote: tiered storage on tier-s3" in b.log(), "tiered storage on")
ok("S3RVER" not in b.log(), "the keys are not logged")


def local_segments(topic):
    return sorted(glob.glob(os.path.join(b.data_dir, topic + "-0", "*.log")))


def objects(topic, suffix=".log"):
    return sorted(glob.glob(os.path.join(
        s3.dir, BUCKET, PREFIX.rstrip("/"), topic, "0",
        "*" + suffix + "._S3rver_object")))


def make(n, start, pad=50):
    return [{"key": b"k%06d" % i,
             "value": b"value-%06d-" % i + b"x" * (i % pad)}
            for i in range(start, start + n)]


def check_all(label, topic, want):
    got = consume(b.bootstrap, topic, [0], count=len(want), timeout=60)
    pairs = [(m.key(), m.value()) for m in got]
    exp = [(r["key"], r["value"]) for r in want]
    offs = [m.offset() for m in got]
    good = pairs == exp and offs == list(range(len(exp)))
    if not ok(good, "%s: %d records of %s from offset 0, byte-exact" %
              (label, len(exp), topic)):
        diag("got %d records; first difference at %s" % (
            len(pairs), next((i for i, (a, e) in enumerate(zip(pairs, exp))
                              if a != e), None)))


SMALL = {"batch.num.messages": 10, "linger.ms": 0}
N = 2000
sent = make(N, 0)
res = produce(b.bootstrap, "archive", sent, conf=SMALL)
ok(all(r and r[0] is None for r in res), "produced %d records" % N)
# Big segments (~200 KB each, multipart) of incompressible values; the
# first upload of a part 2 fails (a 500 from the proxy).
s3.proxy.inject["partNumber=2&"] = 1
BIG_N = 1200
big = [{"key": b"b%06d" % i, "value": os.urandom(400)} for i in range(BIG_N)]
res = produce(b.bootstrap, "big", big, conf={"batch.num.messages": 50})
ok(all(r and r[0] is None for r in res), "produced %d big records" % BIG_N)

ok(wait_until(lambda: len(objects("archive")) >= 10 and
              len(local_segments("archive")) <= 2, 30),
   "segments uploaded (%d objects) and local copies removed (%d left)" %
   (len(objects("archive")), len(local_segments("archive"))))
logs = objects("archive")
ok(all(os.path.exists(p.replace(".log._S3rver", ".index._S3rver")) and
       os.path.exists(p.replace(".log._S3rver", ".timeindex._S3rver"))
       for p in logs),
   "each segment's index files are uploaded with it (before its .log)")
ok(wait_until(lambda: len(objects("big")) >= 2 and
              len(local_segments("big")) <= 1, 30),
   "big segments uploaded (%d)" % len(objects("big")))
ok(wait_until(lambda: "partNumber=" in s3.log() and
              "uploadId=" in s3.log(), 5),
   "big segments go up as multipart uploads")
ok(not s3.proxy.inject["partNumber=2&"] and
   "HTTP 500 InternalError: injected by the test (retriable)" in b.log(),
   "a failed part fails the copy, logged as retriable")
ok(any(m == "DELETE" and q.startswith("uploadId=")
       for (m, _h, _p), q in zip(s3.proxy.requests, s3.proxy.queries)),
   "... and the multipart upload is aborted (AbortMultipartUpload)")
sizes = [os.path.getsize(p) for p in objects("big")]
ok(sizes and min(sizes) > 65536, "the multipart objects are whole "
   "(%s bytes)" % sizes[:3])
ok(s3.proxy.requests and
   all(h == "tier.s3.localhost:%d" % s3.port and
       (p.startswith("/skald/") or p == "/")
       for _m, h, p in s3.proxy.requests),
   "requests name the bucket in the host (virtual-host addressing)")

check_all("read back from the bucket", "archive", sent)
check_all("multipart objects read back", "big", big)

# ------------------------------------------------- the orphan sweep
# An object as an interrupted copy leaves it (no manifest names it), 10
# minutes old by its key, put straight into s3rver; the sweep lists the
# partition (ListObjectsV2, 7 keys a page: continuation tokens) and
# deletes it through tier-s3, and nothing else.
import urllib.request  # noqa: E402
orphan = "%020d-%x%04x" % (3, int(time.time() * 1000) - 600000, 1)
for suffix in (".index", ".log"):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/%s/%sarchive/0/%s%s" % (
            s3.upstream, BUCKET, PREFIX, orphan, suffix),
        data=b"orphan", method="PUT")
    urllib.request.urlopen(req, timeout=10).read()
orphan_path = os.path.join(s3.dir, BUCKET, PREFIX.rstrip("/"), "archive", "0",
                           orphan + ".log._S3rver_object")
ok(os.path.exists(orphan_path), "an orphaned object is in the bucket")
kept = set(objects("archive")) - {orphan_path}
ok(wait_until(lambda: not os.path.exists(orphan_path) and
              not os.path.exists(orphan_path.replace(".log.", ".index.")),
              20),
   "the orphan sweep deletes it (through ListObjectsV2 pages and DELETE)")
ok(kept <= set(objects("archive")),
   "the segments the manifest names stay (%d)" % len(kept))
ok(any("continuation-token=" in q and "list-type=2" in q
       for q in s3.proxy.queries),
   "listings follow continuation tokens")

# ------------------------------------------------- restart, path-style
b.stop()
with open(b.config_path, "w") as f:
    f.write(config(path_style=True))
n_vhost = len(s3.proxy.requests)
b.start()
ok("(path-style addressing" in b.last_log(), "restarted with path-style")
check_all("after a restart (cold cache, path-style)", "archive", sent)
check_all("after a restart (cold cache, path-style)", "big", big)
ok(all(h == "127.0.0.1:%d" % s3.port and
       (p.startswith("/tier/skald/") or p == "/tier/")
       for _m, h, p in s3.proxy.requests[n_vhost:]) and
   any(m == "GET" for m, _h, _p in s3.proxy.requests[n_vhost:]),
   "requests name the bucket in the path (path-style addressing)")

# ------------------------------------------------------- s3rver down
s3.stop()
more = make(600, N)
res = produce(b.bootstrap, "archive", more, conf=SMALL)
ok(all(r and r[0] is None for r in res),
   "producing works while S3 is down")
ok(wait_until(lambda: "copy of segment" in b.last_log() and
              "Connection refused" in b.last_log() and
              "(retriable)" in b.last_log(), 15),
   "failed uploads are logged with the cause, as retriable")
check_copies_stalled(b, "S3")
ok(len(local_segments("archive")) > 3,
   "local segments stay while they cannot be uploaded (%d)" %
   len(local_segments("archive")))
b.restart()
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
cons = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "down",
                 "enable.auto.commit": False,
                 "fetch.error.backoff.ms": 100})
cons.assign([TopicPartition("archive", 0, 0)])
got_any = False
deadline = time.monotonic() + 4
while time.monotonic() < deadline:
    m = cons.poll(0.5)
    if m is not None and m.error() is None:
        got_any = True
ok(not got_any, "remote data cannot be read while S3 is down")
ok(wait_until(lambda: "reading segment" in b.last_log(), 10),
   "the failed read is logged")
got = consume(b.bootstrap, "archive", [0], count=50, timeout=30,
              offsets={0: N})
is_([m.value() for m in got], [r["value"] for r in more[:50]],
    "local data reads while S3 is down")

# ------------------------------------------------------- s3rver back
copied_before = metric(b.metrics(), "skald_remote_segments_copied_total")
s3.start()
all_sent = sent + more
deadline = time.monotonic() + 30
got = []
while time.monotonic() < deadline and len(got) < len(all_sent):
    m = cons.poll(0.5)
    if m is not None and m.error() is None:
        got.append(m)
cons.close()
ok([(m.key(), m.value()) for m in got] ==
   [(r["key"], r["value"]) for r in all_sent],
   "once S3 is back the same consumer reads everything (%d)" % len(got))
ok(wait_until(lambda: len(local_segments("archive")) <= 2, 70),
   "the delayed segments are uploaded and their local copies removed")
check_copies_caught_up(b, copied_before)
check_all("nothing lost", "archive", all_sent)

# ------------------------------------------------------- retention
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402
before = len(objects("archive"))
a = AdminClient({"bootstrap.servers": b.bootstrap})
res = ConfigResource("TOPIC", "archive", set_config={
    "remote.storage.enable": "true", "local.retention.ms": "0",
    "segment.bytes": "4096", "retention.bytes": "20000"})
for f in a.alter_configs([res]).values():
    f.result(timeout=10)
ok(wait_until(lambda: len(objects("archive")) < before - 3 and
              len(objects("archive", ".index")) < before - 3, 20),
   "retention.bytes deletes old segments from the bucket (%d -> %d)" %
   (before, len(objects("archive"))))
c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "lo2"})
lo, hi = c.get_watermark_offsets(TopicPartition("archive", 0), timeout=10)
c.close()
got = consume(b.bootstrap, "archive", [0], count=hi - lo, timeout=60,
              offsets={0: lo})
ok(lo > 0 and [m.value() for m in got] ==
   [r["value"] for r in all_sent[lo:]],
   "what is left reads from the new start (%d)" % lo)
b.stop()
ok("Sanitizer" not in b.log(), "no sanitizer report")
ok(s3.proxy.checked > 100 and not s3.proxy.bad,
   "every request's SigV4 signature checks out (%d requests)" %
   s3.proxy.checked)
ok(s3.proxy.checksums > 50,
   "single PUTs carry a correct x-amz-checksum-crc32c (%d checked)" %
   s3.proxy.checksums)
for bad in s3.proxy.bad[:5]:
    diag("bad signature: %s %s: %s" % bad)

# ------------------------------------------------------- a missing bucket
b2 = Broker(config=config(path_style=True, bucket="no-such-bucket"))
res = produce(b2.bootstrap, "archive", make(300, 0), conf=SMALL)
ok(all(r and r[0] is None for r in res), "producing works without a bucket")
ok(wait_until(lambda: "HTTP 404 NoSuchBucket" in b2.last_log(), 15),
   "a missing bucket is logged with S3's status and error code")
ok("(not retriable)" in b2.last_log(), "... as not retriable")
b2.stop()

# ------------------------------------------------------- the docs' example
with open(os.path.join(REPO, "docs", "plugins.md")) as f:
    doc = f.read()
doc = doc[doc.index("### tier-s3"):]
yaml = doc[doc.index("```yaml\n") + 8:]
yaml = yaml[:yaml.index("```")]
yaml = yaml.replace("build/plugins/tier-s3.so", TIER_S3).replace(
    "http://127.0.0.1:9000", "http://127.0.0.1:%d" % s3.port)
b3 = Broker(config=yaml)
ok("[tier-s3] objects in bucket skald-archive under prod/" in b3.log() and
   "remote: tiered storage on tier-s3" in b3.log(),
   "the example in docs/plugins.md runs")
b3.stop()
s3.stop()
done()
