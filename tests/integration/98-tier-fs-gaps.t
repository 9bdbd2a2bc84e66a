#!/usr/bin/python3
# Tiered storage, the corners (with tier-fs): ListOffsets by timestamp
# inside a remote segment that is not cached answers exactly (after a
# retriable error while the segment downloads); the orphan sweep deletes
# objects no manifest names once they are older than the grace period,
# and nothing else; a broker started without storage.tier warns about
# topics that have data in a tier.
import glob
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

TIER_FS = os.path.join(BUILD, "plugins", "tier-fs.so")
if not os.path.exists(TIER_FS):
    skip_all("no %s (make plugins)" % TIER_FS)

tmp = tempfile.mkdtemp(prefix="skald-tier-gaps-")
import atexit  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)
root = os.path.join(tmp, "tier")
TOPIC = "timed"
TIERED = """\
remote.log.manager.task.interval.ms: 100
remote.log.orphan.sweep.interval.ms: 200
remote.log.orphan.grace.ms: 60000
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
""" % (TIER_FS, root, TOPIC)

b = Broker(config=TIERED)
part_dir = os.path.join(b.data_dir, TOPIC + "-0")


def objects(suffix=".log"):
    return sorted(glob.glob(os.path.join(root, TOPIC, "0", "*" + suffix)))


def local_segments():
    return sorted(glob.glob(os.path.join(part_dir, "*.log")))


# Record i has timestamp T0 + 1000 * i: one answer per offset.
T0 = 1700000000000
N = 1500
sent = [{"key": b"k%05d" % i, "value": b"v%05d-" % i + b"y" * (i % 40),
         "timestamp": T0 + 1000 * i} for i in range(N)]
res = produce(b.bootstrap, TOPIC, sent,
              conf={"batch.num.messages": 10, "linger.ms": 0})
ok(all(r and r[0] is None for r in res), "produced %d timed records" % N)
ok(wait_until(lambda: len(objects()) >= 10 and len(local_segments()) <= 2,
              20), "segments copied to the tier (%d)" % len(objects()))

# ------------------------------------------------ ListOffsets by time
b.restart()  # the download cache starts empty
from confluent_kafka import (Consumer, KafkaException,  # noqa: E402
                             TopicPartition)


def offset_for(ts):
    """offsets_for_times, retried on a retriable error as a client does;
    -> (offset, retriable errors seen)."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "t"})
    errors = 0
    try:
        for _ in range(50):
            try:
                r = c.offsets_for_times([TopicPartition(TOPIC, 0, ts)],
                                        timeout=10)
                if r[0].error is None:
                    return r[0].offset, errors
                errors += 1
            except KafkaException as e:
                if not e.args[0].retriable():
                    raise
                errors += 1
            time.sleep(0.1)
        return None, errors
    finally:
        c.close()


probes = [(T0 + 1000 * 500, 500), (T0 + 1000 * 500 - 1, 500),
          (T0 + 1000 * 501 - 999, 501), (T0 + 1000 * 37 + 1, 38),
          (T0, 0), (T0 - 5, 0)]
ok(not os.listdir(os.path.join(b.data_dir, "remote-cache")),
   "the download cache is empty after the restart")
first = True
for ts, want in probes:
    t0 = time.monotonic()
    got, errs = offset_for(ts)
    is_(got, want, "ListOffsets at T0%+d ms, in the tier: offset %d%s" % (
        ts - T0, want, " (after %d errors)" % errs if errs else ""))
    if first:
        # It waits for the download it started, woken when that ends
        # (the wait's own limit is 15 s, past the client's 10 s).
        ok(errs == 0 and time.monotonic() - t0 < 5,
           "the first, from an empty cache, is answered once the segment "
           "is downloaded (%.1f s, %d errors)" % (time.monotonic() - t0,
                                                 errs))
        first = False
ok(offset_for(T0 + 1000 * N)[0] in (-1, N),
   "ListOffsets after the last record: the end (or -1)")
ok("reading segment" not in b.last_log(), "no download failed")

# ------------------------------------------------ the orphan sweep
# Keys the broker would make: BASE (20 digits) - ms (hex) seq (4 hex).
now = int(time.time() * 1000)
d = os.path.join(root, TOPIC, "0")
old = "%020d-%x%04x" % (5, now - 600000, 1)       # 10 min old
young = "%020d-%x%04x" % (6, now + 3600000, 2)    # "created" in an hour
crashed = "%020d-%x%04x" % (7, now - 7200000, 3)  # .index only: interrupted
for name in (old + ".log", old + ".index", old + ".timeindex",
             young + ".log", crashed + ".index", crashed + ".timeindex",
             "notes.txt"):
    with open(os.path.join(d, name), "w") as f:
        f.write("orphan\n")
before = set(objects())
ok(wait_until(lambda: not os.path.exists(os.path.join(d, old + ".log")) and
              not os.path.exists(os.path.join(d, crashed + ".index")), 15),
   "orphaned objects older than the grace period are deleted")
ok(not glob.glob(os.path.join(d, old + ".*")) and
   not glob.glob(os.path.join(d, crashed + ".*")),
   "... every file of them")
ok("deleted orphaned objects of %s/0/%s" % (TOPIC, old) in b.last_log(),
   "... and logged")
ok(os.path.exists(os.path.join(d, young + ".log")),
   "an orphan younger than the grace period stays")
ok(os.path.exists(os.path.join(d, "notes.txt")),
   "an object the broker did not name stays")
ok(set(objects()) - {os.path.join(d, young + ".log")} == before -
   {os.path.join(d, old + ".log"), os.path.join(d, young + ".log")},
   "every segment the manifest names stays")
check = consume(b.bootstrap, TOPIC, [0], count=N, timeout=60)
is_([m.value() for m in check], [r["value"] for r in sent],
    "everything still reads from offset 0")

# ------------------------------------------------ no storage.tier
b.stop()
with open(b.config_path, "w") as f:
    f.write("topics:\n  other:\n    configs:\n"
            "      remote.storage.enable: \"true\"\n")
b.start()
ok("remote: topic %s has data in a storage tier (1 of its 1 partitions "
   "have a remote.manifest" % TOPIC in b.last_log() and
   "storage.tier is not set" in b.last_log(),
   "without storage.tier: a warning names the topic with remote data")
ok("remote: topic other has remote.storage.enable but storage.tier is "
   "not set" in b.last_log(),
   "... and the topic asking for remote storage")
b.stop()
with open(b.config_path, "w") as f:
    f.write(TIERED)
b.start()
ok("storage.tier is not set" not in b.last_log(),
   "no such warning with the tier configured")
b.stop()
ok("Sanitizer" not in b.log(), "no sanitizer report")
done()
