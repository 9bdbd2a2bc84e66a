#!/usr/bin/python3
# A real full disk: the data directory on a 4 MB tmpfs (root only, and only
# where mount works; skipped otherwise). Filling it makes produce answer
# KAFKA_STORAGE_ERROR (confluent-kafka delivery reports, acks=1 and all),
# consuming keeps working, the broker stays up, nothing acknowledged is
# lost, and once space is freed producing works again at the next offset.
import atexit
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

if os.geteuid() != 0:
    skip_all("needs root to mount a tmpfs")
mnt = tempfile.mkdtemp(prefix="skald-full-")
r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                   capture_output=True, text=True)
if r.returncode != 0:
    os.rmdir(mnt)
    skip_all("cannot mount a tmpfs: %s" % r.stderr.strip()[:200])

from confluent_kafka import KafkaError, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

b = None


def unmount():
    if b is not None:
        b.kill()
    if subprocess.run(["umount", mnt], capture_output=True).returncode:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    try:
        os.rmdir(mnt)
    except OSError:
        pass


atexit.register(unmount)

data = os.path.join(mnt, "data")
b = Broker(data_dir=data)
BS = b.bootstrap
TOPIC = "full"
_admin = AdminClient({"bootstrap.servers": BS, "log_level": 3})
_admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(15)


def send(values, acks):
    """Produce values one by one (no retries); [(err, offset)]."""
    p = Producer({"bootstrap.servers": BS, "acks": acks, "retries": 0,
                  "linger.ms": 0, "message.timeout.ms": 10000,
                  "log_level": 3})
    out = [None] * len(values)

    def cb(i):
        def f(err, msg):
            out[i] = (err, msg.offset() if err is None else None)
        return f
    for i, v in enumerate(values):
        p.produce(TOPIC, v, partition=0, on_delivery=cb(i))
        p.flush(15)
    return out


acked = {}   # offset -> value


def note(values, res):
    for v, r in zip(values, res):
        if r and r[0] is None:
            acked[r[1]] = v


vals = [b"before-%03d-" % i + os.urandom(200) for i in range(100)]
res = send(vals, "all")
note(vals, res)
is_(len(acked), 100, "100 records acknowledged before the disk fills")

# Fill the disk, leaving a little room.
st = os.statvfs(mnt)
free = st.f_bavail * st.f_frsize
ballast = os.path.join(mnt, "ballast")
with open(ballast, "wb") as f:
    f.write(b"\0" * max(free - 48 * 1024, 0))
diag("tmpfs: %d KB free before the ballast" % (free // 1024))

vals = [b"filling-%03d-" % i + os.urandom(4000) for i in range(60)]
res = send(vals, "1")
note(vals, res)
errs = [r[0] for r in res if r and r[0] is not None]
ok(len(errs) > 0, "the disk fills up: %d of %d acks=1 records refused" %
   (len(errs), len(vals)))
ok(errs and all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in errs),
   "with KAFKA_STORAGE_ERROR (%s)" %
   (errs[0].name() if errs else "no error"))
vals = [b"full-all-%d-" % i + os.urandom(4000) for i in range(3)]
res = send(vals, "all")
note(vals, res)
ok(all(r and r[0] is not None and
       r[0].code() == KafkaError.KAFKA_STORAGE_ERROR for r in res),
   "acks=all gets KAFKA_STORAGE_ERROR too")
ok(b.alive(), "the broker stays up")

got = consume(BS, TOPIC, [0], None, timeout=20)
stored = {m.offset(): m.value() for m in got}
ok(all(stored.get(o) == v for o, v in acked.items()),
   "consuming works on the full disk: all %d acknowledged records, byte "
   "for byte" % len(acked))
end = max(acked) + 1
is_(sorted(stored), list(range(end)), "offsets contiguous 0..%d" % (end - 1))

# Space returns.
os.unlink(ballast)
vals = [b"after-%03d-" % i + os.urandom(300) for i in range(50)]
res = send(vals, "all")
note(vals, res)
ok(all(r and r[0] is None for r in res),
   "after freeing space, acks=all produce works again")
is_([r[1] for r in res][:1], [end], "at the next offset (%d)" % end)

b.stop(name="SIGTERM: exit 0")
b.start()
got = consume(BS, TOPIC, [0], None, timeout=20)
stored = {m.offset(): m.value() for m in got}
ok(all(stored.get(o) == v for o, v in acked.items()) and
   sorted(stored) == list(range(len(stored))),
   "after a restart: %d acknowledged records, contiguous" % len(acked))
b.stop(name="SIGTERM after the restart: exit 0")
done()
