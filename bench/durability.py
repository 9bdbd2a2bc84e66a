#!/usr/bin/python3
"""Recovery benchmarks (issue 4), written to bench/RESULTS-durability.md.

  1. Cost of recovery per GB of unflushed tail: a partition is checkpointed,
     then N MB more are appended and the process exits without closing (a
     crash: the page cache keeps the tail, nothing vouches for it). The
     next open verifies every batch of the tail (framing and CRC) and
     indexes it. Timed with warm and cold page cache.
  2. Restart of build/skald after a clean shutdown with 10 GB of log
     (10 partitions of 1 GB, 128 MB segments): time from exec to the
     listener accepting, warm and cold cache; the same with the recovery
     checkpoints removed (everything scanned) and with a 1 GB unflushed
     tail in one partition.

Logs are written with bench/logfill.c (the log library itself), which is
much faster than producing them through the broker and gives the same
files. Cold cache: every file is synced and dropped with
posix_fadvise(DONTNEED) first.

    make build/skald build/skald-logfill
    python3 bench/durability.py [--gb 10] [--dir /var/tmp] [--quick]
"""

import argparse
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          **kw).stdout


def logfill(build, *args):
    return sh(os.path.join(build, "skald-logfill"), *[str(a) for a in args])


def open_stats(build, d):
    return json.loads(logfill(build, "open", d))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Skald:
    def __init__(self, build, data, port):
        self.argv = [os.path.join(build, "skald"), "--listen",
                     "127.0.0.1:%d" % port, "--data-dir", data]
        self.port = port
        self.proc = None
        self.log = os.path.join(os.path.dirname(data), "skald.log")

    def start(self):
        """Start; seconds until the listener accepts."""
        t0 = time.monotonic()
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdout=err, stderr=err,
                                         stdin=subprocess.DEVNULL)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("skald exited: see %s" % self.log)
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         0.2).close()
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.002)

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(120)


def tail_bench(build, work, sizes, rows):
    for mb in sizes:
        d = os.path.join(work, "tail-%d" % mb, "t-0")
        logfill(build, "fill", d, 64)
        logfill(build, "crash", d, mb)
        warm = open_stats(build, d)
        logfill(build, "evict", os.path.dirname(d))
        cold = open_stats(build, d)
        for name, st in (("warm", warm), ("cold", cold)):
            rows.append((mb, name, st["ms"], st["scanned"],
                         st["ms"] / 1000.0 / (st["scanned"] / 2**30)))
        shutil.rmtree(os.path.dirname(d))


def broker_bench(build, work, gb, rows):
    from confluent_kafka.admin import AdminClient, NewTopic
    data = os.path.join(work, "broker", "data")
    os.makedirs(data)
    port = free_port()
    s = Skald(build, data, port)
    s.start()
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:%d" % port})
    parts = gb
    admin.create_topics([NewTopic("big", parts, 1, config={
        "segment.bytes": str(128 << 20)})])["big"].result(30)
    s.stop()
    dirs = sorted(glob.glob(os.path.join(data, "big-*")))
    t0 = time.monotonic()
    for d in dirs:
        logfill(build, "fill", d, 1024, 128)
    fill = time.monotonic() - t0
    total = sum(os.path.getsize(f) for f in glob.glob(
        os.path.join(data, "big-*", "*.log")))
    nseg = len(glob.glob(os.path.join(data, "big-*", "*.log")))
    rows.append(("log written (fill + fdatasync)", "%.1f GB in %d segments"
                 % (total / 2**30, nseg), "%.1f s" % fill))

    def run(label, prep=None):
        if prep:
            prep()
        t = s.start()
        s.stop()
        rows.append((label, "%.1f GB" % (total / 2**30), "%.3f s" % t))

    def evict():
        logfill(build, "evict", data)

    run("restart after a clean shutdown, warm cache")
    run("restart after a clean shutdown, warm cache (again)")
    run("restart after a clean shutdown, cold cache", evict)

    def no_ckpt():
        for f in glob.glob(os.path.join(data, "big-*",
                                        "recovery.checkpoint")):
            os.unlink(f)
    # The cache is cold here (evicted above); the scan warms it.
    run("no recovery checkpoints (full scan), cold cache", no_ckpt)
    run("no recovery checkpoints (full scan), warm cache", no_ckpt)
    logfill(build, "crash", dirs[0], 1024)
    run("crash with a 1 GB unflushed tail in one partition, warm cache")
    logfill(build, "crash", dirs[0], 1024)
    evict()
    run("crash with a 1 GB unflushed tail in one partition, cold cache")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--gb", type=int, default=10)
    ap.add_argument("--quick", action="store_true",
                    help="1 GB and small tails, to try the script")
    ap.add_argument("--out",
                    default=os.path.join(REPO, "bench",
                                         "RESULTS-durability.md"))
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    sizes = [64, 256] if a.quick else [256, 1024, 2048]
    gb = 1 if a.quick else a.gb
    work = tempfile.mkdtemp(prefix="skald-durability-", dir=a.dir)
    tails, restarts = [], []
    try:
        tail_bench(build, work, sizes, tails)
        broker_bench(build, work, gb, restarts)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = sh("df", "-T", a.dir).splitlines()[-1].split()
    out = []
    out.append("# Durability benchmarks: recovery\n")
    out.append("Written by `bench/durability.py` (%s). Machine: %s, %d "
               "CPUs, %s; data on %s (%s).\n" % (
                   time.strftime("%Y-%m-%d"), cpu or "?", os.cpu_count(),
                   platform.platform(), a.dir, fs[1]))
    out.append("## Recovery cost per GB of unflushed tail\n")
    out.append("A checkpointed partition gets N MB more, then the process "
               "exits without closing. The next open verifies every batch "
               "of the tail (framing, CRC-32C) and indexes it; nothing "
               "before the checkpoint is read.\n")
    out.append("| tail | cache | open | scanned | per GB of tail |")
    out.append("|---:|---|---:|---:|---:|")
    for mb, cache, ms, scanned, per in tails:
        out.append("| %d MB | %s | %d ms | %.0f MB | %.2f s |" % (
            mb, cache, ms, scanned / 2**20, per))
    out.append("\n## Restart of build/skald with %d GB of log\n" % gb)
    out.append("%d partitions of 1 GB in 128 MB segments; time from exec "
               "to the listener accepting.\n" % gb)
    out.append("| case | log | time |")
    out.append("|---|---|---:|")
    for label, size, t in restarts:
        out.append("| %s | %s | %s |" % (label, size, t))
    out.append("""
## How to read these

- After a clean shutdown nothing is scanned but the last index interval
  (4 KB) of each active segment: the start costs the index files of each
  segment (mapped, their CRC checked) and a few reads, not the data.
- After a crash only what was written since the last recovery checkpoint
  is scanned; the flusher writes one every
  log.flush.offset.checkpoint.interval.ms (60 s), so the unflushed tail is
  bounded by a minute of writes per partition. Without any checkpoint
  (a data directory from before them, or one lost) everything is scanned,
  as the "no recovery checkpoints" rows show.
- "Cold" means dropped from this machine's page cache (fdatasync then
  posix_fadvise DONTNEED); on a VM the host may still cache the disk
  image, so the first read of data ever written can be slower still.
""")
    text = "\n".join(out)
    print(text)
    if not a.quick:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
