#!/usr/bin/python3
# Tiered storage with the tier-fs plugin (a directory as the object store)
# and real clients: produce enough to roll many segments, wait for them to
# be copied, see local segments removed and objects present, consume
# everything from offset 0 byte-exact (read back from the tier), restart
# and consume again; then take the tier away (its directory replaced by a
# file), produce more, check that copies fail without losing anything and
# that remote reads fail (retriably) while local ones work; put the tier
# back and check that everything is copied and readable; finally
# retention.bytes over the whole log deletes from the tier too.
import glob
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

TIER_FS = os.path.join(BUILD, "plugins", "tier-fs.so")
if not os.path.exists(TIER_FS):
    skip_all("no %s (make plugins)" % TIER_FS)

tmp = tempfile.mkdtemp(prefix="skald-tier-")
import atexit  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)
root = os.path.join(tmp, "tier")
TOPIC = "archive"

b = Broker(config="""\
remote.log.manager.task.interval.ms: 100
log.retention.check.interval.ms: 300
plugins:
  - path: %s
    config: { root: %s, fsync: false }
storage:
  tier: tier-fs
topics:
  %s:
    partitions: 1
    configs:
      remote.storage.enable: "true"
      local.retention.ms: "0"
      segment.bytes: "4096"
""" % (TIER_FS, root, TOPIC))
ok("[tier-fs] objects in %s" % root in b.log(), "tier-fs loaded")
ok("remote: tiered storage on tier-fs" in b.log(), "tiered storage on")

part_dir = os.path.join(b.data_dir, TOPIC + "-0")


def local_segments():
    return sorted(glob.glob(os.path.join(part_dir, "*.log")))


def objects(suffix=".log"):
    return sorted(glob.glob(os.path.join(root, TOPIC, "0", "*" + suffix)))


def make(n, start):
    return [{"key": b"k%06d" % i, "value": b"value-%06d-" % i + b"x" * (i % 50)}
            for i in range(start, start + n)]


SMALL = {"batch.num.messages": 10, "linger.ms": 0}
N = 2000
sent = make(N, 0)
res = produce(b.bootstrap, TOPIC, sent, conf=SMALL)
ok(all(r and r[0] is None for r in res), "produced %d records" % N)
ok(wait_until(lambda: len(objects()) >= 10 and len(local_segments()) <= 2,
              20),
   "segments copied to the tier (%d objects) and local copies removed "
   "(%d local segments left)" % (len(objects()), len(local_segments())))
ok(len(objects(".index")) == len(objects()) and
   len(objects(".timeindex")) == len(objects()),
   "each segment's index files are copied with it")
ok(os.path.exists(os.path.join(part_dir, "remote.manifest")),
   "the partition has a remote manifest")
ok(not glob.glob(os.path.join(root, "**", "*.tmp.*"), recursive=True),
   "no temporary object left in the tier")


def check_all(label, want, count=None):
    got = consume(b.bootstrap, TOPIC, [0], count=count or len(want),
                  timeout=60)
    pairs = [(m.key(), m.value()) for m in got]
    exp = [(r["key"], r["value"]) for r in want]
    offs = [m.offset() for m in got]
    good = pairs == exp and offs == list(range(len(exp)))
    if not ok(good, "%s: %d records from offset 0, byte-exact" %
              (label, len(exp))):
        diag("got %d records; first difference at %s" % (
            len(pairs), next((i for i, (a, e) in enumerate(zip(pairs, exp))
                              if a != e), None)))


check_all("read back from the tier", sent)
ok(os.path.isdir(os.path.join(b.data_dir, "remote-cache")),
   "downloads went to the cache")

# ListOffsets: earliest is the remote start, latest the local end.
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "lo"})
lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
c.close()
is_((lo, hi), (0, N), "watermarks span both tiers")

# ------------------------------------------------------------ restart
b.restart()
ok("remote: topic %s partition 0: " % TOPIC in b.last_log() and
   " segments in tier-fs" in b.last_log(),
   "after a restart the manifest is read back")
check_all("after a restart (cold cache)", sent)

# ------------------------------------------------------------ tier down
os.rename(root, root + ".away")
with open(root, "w") as f:
    f.write("not a directory\n")
more = make(600, N)
res = produce(b.bootstrap, TOPIC, more, conf=SMALL)
ok(all(r and r[0] is None for r in res),
   "producing works while the tier is down")
ok(wait_until(lambda: "copy of segment" in b.last_log() and
              "failed" in b.last_log(), 15),
   "failed copies are logged")
check_copies_stalled(b, "the tier")
time.sleep(1)
ok(len(local_segments()) > 3,
   "local segments stay while they cannot be copied (%d)" %
   len(local_segments()))
# Remote reads fail (retriably) with the cache cleared by the restart:
# a consumer from offset 0 gets nothing until the tier is back. Reads of
# the local part still work.
got = consume(b.bootstrap, TOPIC, [0], count=50, timeout=30,
              offsets={0: N})
is_([m.value() for m in got], [r["value"] for r in more[:50]],
    "local data reads while the tier is down")
b.restart()
from confluent_kafka import KafkaError  # noqa: E402
cons = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "down",
                 "enable.auto.commit": False,
                 "fetch.error.backoff.ms": 100})
cons.assign([TopicPartition(TOPIC, 0, 0)])
got_any = False
deadline = time.monotonic() + 4
while time.monotonic() < deadline:
    m = cons.poll(0.5)
    if m is not None and m.error() is None:
        got_any = True
ok(not got_any, "remote data cannot be read while the tier is down")
ok(wait_until(lambda: "reading segment" in b.last_log(), 10),
   "the failed read is logged")

# ------------------------------------------------------------ tier back
copied_before = metric(b.metrics(), "skald_remote_segments_copied_total")
os.unlink(root)
os.rename(root + ".away", root)
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
   "once the tier is back the same consumer reads everything (%d)" %
   len(got))
ok(wait_until(lambda: len(local_segments()) <= 2, 30),
   "the delayed segments are copied and their local copies removed")
check_copies_caught_up(b, copied_before)
check_all("nothing lost", all_sent)

# ------------------------------------------------------------ DeleteRecords
import socket  # noqa: E402
import struct  # noqa: E402


def delete_records(topic, partition, offset):
    """DeleteRecords v1 of one partition -> (low watermark, error)."""
    n = topic.encode()
    body = (struct.pack(">i", 1) + struct.pack(">h", len(n)) + n +
            struct.pack(">iiq", 1, partition, offset) +
            struct.pack(">i", 5000))
    with socket.create_connection((b.host, b.port), 10) as s:
        s.sendall(kreq(21, 1, 7, body))
        f = recv_frame(s, 10)
    off = 12
    (ln,) = struct.unpack_from(">h", f, off)
    off += 2 + ln + 4
    _p, low, err = struct.unpack_from(">iqh", f, off)
    return low, err


before = len(objects())
is_(delete_records(TOPIC, 0, 500), (500, 0),
    "DeleteRecords to an offset in the tier answers it as the low watermark")
c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dr"})
lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
c.close()
is_(lo, 500, "the log start offset is now 500")
ok(wait_until(lambda: len(objects()) < before, 10),
   "segments entirely below it are deleted from the tier (%d -> %d)" %
   (before, len(objects())))
got = consume(b.bootstrap, TOPIC, [0], count=100, timeout=60,
              offsets={0: 500})
is_([m.offset() for m in got], list(range(500, 600)),
    "reads start at the new start offset")
is_([m.value() for m in got], [r["value"] for r in all_sent[500:600]],
    "... with the right records")
b.restart()
c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dr2"})
lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
c.close()
is_(lo, 500, "the remote start offset survives a restart")

# ------------------------------------------------------------ retention
from confluent_kafka.admin import (AdminClient, ConfigResource,  # noqa: E402
                                   NewTopic)
before = len(objects())
a = AdminClient({"bootstrap.servers": b.bootstrap})
res = ConfigResource("TOPIC", TOPIC, set_config={
    "remote.storage.enable": "true", "local.retention.ms": "0",
    "segment.bytes": "4096", "retention.bytes": "20000"})
for f in a.alter_configs([res]).values():
    f.result(timeout=10)
ok(wait_until(lambda: len(objects()) < before - 3, 20),
   "retention.bytes deletes old segments from the tier (%d -> %d)" %
   (before, len(objects())))
c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "lo2"})
lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
c.close()
ok(lo > 0 and hi == len(all_sent),
   "the log start offset moved (%d), the end did not (%d)" % (lo, hi))
got = consume(b.bootstrap, TOPIC, [0], count=hi - lo, timeout=60,
              offsets={0: lo})
is_([m.value() for m in got], [r["value"] for r in all_sent[lo:]],
    "what is left reads from the new start")

# --------------------------------------------- local.retention.bytes
# Time never removes local copies here: only the size does.
LB = "arch-bytes"
lb_dir = os.path.join(b.data_dir, LB + "-0")
for f in a.create_topics([NewTopic(LB, 1, 1, config={
        "remote.storage.enable": "true", "local.retention.ms": "-1",
        "local.retention.bytes": "12000",
        "segment.bytes": "4096"})]).values():
    f.result(timeout=10)
lb_sent = make(1500, 0)
res = produce(b.bootstrap, LB, lb_sent, conf=SMALL)
ok(all(r and r[0] is None for r in res), "produced %d records to %s" %
   (len(lb_sent), LB))


def lb_objects():
    return sorted(glob.glob(os.path.join(root, LB, "0", "*.log")))


def lb_local():
    return sorted(glob.glob(os.path.join(lb_dir, "*.log")))


def lb_sizes():
    """Sizes of the local segments; one the broker removes between the
    listing and the stat is not there any more, and is left out."""
    sizes = []
    for f in lb_local():
        try:
            sizes.append(os.path.getsize(f))
        except FileNotFoundError:
            pass
    return sizes


def lb_trimmed():
    """As retention.bytes in Kafka: the oldest closed segment goes while
    the log would still be at least the limit without it; so the log,
    active segment included, is under the limit without its oldest."""
    s = lb_sizes()
    return len(s) > 1 and sum(s) - s[0] < 12000


ok(wait_until(lambda: len(lb_objects()) >= len(lb_local()) - 1 and
              lb_trimmed(), 20),
   "local.retention.bytes: local segments trimmed to the limit (sizes %s, "
   "limit 12000), %d objects in the tier" % (lb_sizes(), len(lb_objects())))
ok(len(lb_local()) >= 3,
   "... and no fewer than the limit allows (%d local segments)" %
   len(lb_local()))
got = consume(b.bootstrap, LB, [0], count=len(lb_sent), timeout=60)
is_([m.value() for m in got], [r["value"] for r in lb_sent],
    "%s reads back whole across both tiers" % LB)

# ------------------------------------------ a damaged object in the tier
# The restart empties nothing on disk but the broker's cache of remote
# segments is checked against the manifest: a flipped byte in the tier's
# copy is refused, never served.
b.stop()
for f in glob.glob(os.path.join(b.data_dir, "remote-cache", "**", "*"),
                   recursive=True):
    if os.path.isfile(f):
        os.unlink(f)
first = lb_objects()[0]
with open(first, "r+b") as f:
    f.seek(os.path.getsize(first) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
b.start()
got = consume(b.bootstrap, LB, [0], count=len(lb_sent), timeout=8)
ok(all(m.value() == r["value"] for m, r in zip(got, lb_sent)) and
   len(got) < len(lb_sent),
   "a corrupt object is not served (%d good records, none bad)" %
   len(got))
ok(wait_until(lambda: "CRC-32C" in b.last_log() and
              "the manifest says" in b.last_log(), 10),
   "the mismatch is logged")

# ------------------------------------------------------------ damage
b.stop()
man = os.path.join(part_dir, "remote.manifest")
with open(man, "r+b") as f:
    data = f.read()
    f.seek(len(data) // 2)
    f.write(b"X")
b.start()
ok(re.search(r"remote\.manifest: (checksum mismatch|a malformed line); "
             r"set aside as", b.last_log()),
   "a damaged manifest is reported and set aside")
ok(os.path.exists(man + ".bad"), "... as remote.manifest.bad")
c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dmg"})
lo2, hi2 = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
c.close()
got = consume(b.bootstrap, TOPIC, [0], count=hi2 - lo2, timeout=60,
              offsets={0: lo2})
is_([m.value() for m in got], [r["value"] for r in all_sent[lo2:]],
    "the local data is untouched (offsets %d-%d)" % (lo2, hi2 - 1))
b.stop()
ok("Sanitizer" not in b.log(), "no sanitizer report")
done()
