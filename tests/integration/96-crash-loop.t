#!/usr/bin/python3
# Process crashes: acks=all producers (three processes, confluent-kafka)
# run against build/skald, which is killed with SIGKILL at a random
# moment and restarted, CYCLES times (default 3; `make test-crash
# CYCLES=1000` runs many). Each producer records what its delivery
# callbacks acknowledged. After every restart:
#   - every acknowledged record is there, byte for byte, at its offset;
#   - offsets are contiguous (checked from the oldest record acknowledged
#     since the last check to the end; the last cycle checks everything);
#   - an OffsetCommit acknowledged right before the kill survived.
# The recovery checkpoint is written every 300 ms and segments are small,
# so kills land before, during and after checkpoints and rolls.
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

CYCLES = int(os.environ.get("CYCLES", "3"))
SEED = int(os.environ.get("CRASH_SEED", str(int(time.time()))))
PARTS = 3
TOPIC = "crash"
GROUP = "crash-g"
rng = random.Random(SEED)
diag("CYCLES=%d CRASH_SEED=%d" % (CYCLES, SEED))

# The value of a producer's seq-th record: the producers make it, the
# checker recomputes it.
VALUE_SRC = r'''
import random
def value(pid, seq):
    r = random.Random(pid * 1000003 + seq)
    return b"%d-%d-" % (pid, seq) + r.randbytes(20 + seq % 300)
'''
exec(VALUE_SRC)

PRODUCER_SRC = VALUE_SRC + r'''
import sys, time
from confluent_kafka import Producer
bs, topic, pid, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = open(path, "a", buffering=1)
p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 2,
              "message.timeout.ms": 4000, "log_level": 0,
              "queue.buffering.max.messages": 2000,
              "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100,
              "retry.backoff.ms": 20})
def cb(err, msg):
    if err is None:
        seq = int(msg.value().split(b"-")[1])
        out.write("%d %d %d\n" % (msg.partition(), msg.offset(), seq))
seq = 0
while True:
    try:
        p.produce(topic, value(pid, seq), on_delivery=cb)
        seq += 1
    except BufferError:
        p.poll(0.05)
        continue
    # About 300 records a second each: enough to be mid-flight at every
    # kill, little enough for a thousand cycles.
    p.poll(0.003)
'''

b = Broker(args=["--set", "log.flush.offset.checkpoint.interval.ms=300"])
BS = b.bootstrap
_admin = AdminClient({"bootstrap.servers": BS, "log_level": 3})
_admin.create_topics([NewTopic(TOPIC, PARTS, 1, config={
    "segment.bytes": "65536"})])[TOPIC].result(15)

script = os.path.join(b.tmp, "producer.py")
with open(script, "w") as f:
    f.write(PRODUCER_SRC)
procs = []
files = []
for pid in range(3):
    path = os.path.join(b.tmp, "acked.%d" % pid)
    files.append(path)
    procs.append(subprocess.Popen(
        [sys.executable, script, BS, TOPIC, str(pid), path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def stop_producers():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(10)


import atexit  # noqa: E402
atexit.register(stop_producers)


def pause(on):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGSTOP if on else signal.SIGCONT)


# Acknowledged records: (partition, offset) -> (pid, seq)
acked = {}
read_at = [0] * len(files)   # bytes of each file already read
verified_end = [0] * PARTS   # offsets below are verified contiguous
conflicts = []


def read_acks():
    """New acknowledged records since the last call: {(p, o): (pid, seq)}"""
    new = {}
    for pid, path in enumerate(files):
        try:
            with open(path, "rb") as f:
                f.seek(read_at[pid])
                data = f.read()
        except FileNotFoundError:
            continue
        cut = data.rfind(b"\n") + 1  # whole lines only
        read_at[pid] += cut
        for line in data[:cut].splitlines():
            p, o, seq = (int(x) for x in line.split())
            k = (p, o)
            if k in acked and acked[k] != (pid, seq):
                conflicts.append((k, acked[k], (pid, seq)))
            acked[k] = new[k] = (pid, seq)
    return new


def verify(new, full):
    """Check the new acks and contiguity; returns a list of problems."""
    bad = []
    start = {}
    for q in range(PARTS):
        lo = min([o for (p, o) in new if p == q] + [verified_end[q]])
        start[q] = 0 if full else lo
    got = consume(BS, TOPIC, list(range(PARTS)), None, timeout=60,
                  offsets=start)
    stored = {}
    for m in got:
        stored[(m.partition(), m.offset())] = m.value()
    check = acked if full else new
    for k, (pid, seq) in check.items():
        if stored.get(k) != value(pid, seq):
            bad.append("acknowledged %s (producer %d, #%d) %s" % (
                k, pid, seq, "missing" if k not in stored else "differs"))
            if len(bad) > 5:
                break
    for q in range(PARTS):
        offs = sorted(o for (p, o) in stored if p == q)
        if offs != list(range(start[q], start[q] + len(offs))):
            bad.append("partition %d: offsets not contiguous from %d" %
                       (q, start[q]))
        verified_end[q] = start[q] + len(offs)
    if conflicts:
        bad.append("offsets acknowledged twice with different records: %r"
                   % conflicts[:3])
    return bad


def commit(c, k):
    """A synchronous OffsetCommit of k for partition 0; True if acked."""
    try:
        c.commit(offsets=[TopicPartition(TOPIC, 0, k)], asynchronous=False)
        return True
    except Exception as e:  # noqa: BLE001
        diag("commit %d: %s" % (k, e))
        return False


def committed():
    c = Consumer({"bootstrap.servers": BS, "group.id": GROUP,
                  "log_level": 0})
    try:
        return c.committed([TopicPartition(TOPIC, 0)], timeout=15)[0].offset
    finally:
        c.close()


committer = Consumer({"bootstrap.servers": BS, "group.id": GROUP,
                      "enable.auto.commit": False, "log_level": 0,
                      "reconnect.backoff.ms": 10,
                      "reconnect.backoff.max.ms": 100,
                      "retry.backoff.ms": 20})
last_commit = -1
next_commit = 1
total_cycles_ok = 0
t0 = time.monotonic()
for cycle in range(1, CYCLES + 1):
    time.sleep(rng.uniform(0.2, 1.0))
    # Offsets acknowledged just before the kill must survive it.
    for _ in range(rng.randrange(1, 4)):
        if commit(committer, next_commit):
            last_commit = next_commit
        next_commit += 1
    time.sleep(rng.uniform(0, 0.05))
    b.kill()
    pause(True)
    b.start()
    new = read_acks()
    full = cycle == CYCLES
    bad = verify(new, full)
    got = committed()
    if got < last_commit:
        bad.append("committed offset %d, %d was acknowledged" %
                   (got, last_commit))
    if not ok(not bad, "cycle %d: %d new acknowledged records present%s, "
              "contiguous, committed offset %d kept" % (
                  cycle, len(new), " (full check of %d)" % len(acked)
                  if full else "", last_commit)):
        for line in bad[:10]:
            diag("  " + line)
        break
    total_cycles_ok += 1
    if cycle % 50 == 0:
        diag("%d cycles, %d acknowledged records, %.0f s" % (
            cycle, len(acked), time.monotonic() - t0))
    pause(False)

committer.close()
stop_producers()
ok(len(acked) > 0, "%d records acknowledged over %d cycles" %
   (len(acked), total_cycles_ok))
b.stop()
done()
