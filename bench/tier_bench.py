#!/usr/bin/python3
"""Tiered storage benchmark (issue 6): offload throughput to a storage
tier and the latency of a cold fetch from it. Not part of `make test`.

    bench/tier_bench.py [--build build] [--mb 256] [--segment-mb 8]
                        [--tier tier-fs|tier-s3] [--fsync]
    bench/tier_bench.py --results [--build build]

Starts build/skald with the tier plugin on loopback (tier-fs: a directory
under TMPDIR, on the same disk as the data; tier-s3: s3rver from
tests/s3, a Node.js S3 server keeping objects under TMPDIR, path-style,
default multipart settings: 8 MiB threshold and parts), produces --mb MiB of 1 KiB
records to a topic with remote.storage.enable and local.retention.ms=0,
and reports:
  offload   MiB/s from the first to the last "copied segment" log line
            (checksums, the copy itself and the manifest write; fsync'd
            when --fsync)
  lag       seconds from the end of producing until every closed segment
            was in the tier
  cold      ms to the first record at offset 0 after a restart (empty
            cache: download, CRC-32C check, batch scan, then the fetch)
  warm      the same fetch again (served from the cache)

--results runs tier-fs and tier-s3 with 8 MiB segments (single PUTs) and
tier-s3 with 32 MiB segments (multipart uploads) and writes the figures
to bench/RESULTS-tier.md, which bench/run.py carries into its report.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(skald, conf, log, port):
    p = subprocess.Popen([skald, "--config", conf], stdout=log,
                         stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("skald did not start; see %s" % log.name)


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(60)


def first_record_ms(bs, topic):
    c = Consumer({"bootstrap.servers": bs, "group.id": "bench",
                  "enable.auto.commit": False,
                  "fetch.error.backoff.ms": 10})
    t0 = time.monotonic()
    c.assign([TopicPartition(topic, 0, 0)])
    while True:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            break
        if time.monotonic() - t0 > 120:
            sys.exit("no record within 120 s")
    ms = (time.monotonic() - t0) * 1000
    c.close()
    return ms


S3RVER = os.path.join(REPO, "tests", "s3", "node_modules", ".bin", "s3rver")


def start_s3rver(tmp):
    """s3rver with a bucket "bench" on a free port -> (process, port)."""
    if not os.path.exists(S3RVER):
        sys.exit("no %s: run scripts/deps.sh" % S3RVER)
    port = free_port()
    p = subprocess.Popen([S3RVER, "-d", os.path.join(tmp, "s3"), "-a",
                          "127.0.0.1", "-p", str(port), "-s",
                          "--configure-bucket", "bench"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL,
                         env=dict(os.environ,
                                  NODE_OPTIONS="--openssl-legacy-provider"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("s3rver did not start")


def tier_config(tier, tmp, fsync, s3_port):
    if tier == "tier-s3":
        return """{ endpoint: "http://127.0.0.1:%d", bucket: bench,
              access_key: S3RVER, secret_key: S3RVER, path_style: true }""" % (
            s3_port)
    return "{ root: %s/tier, fsync: %s }" % (tmp, "true" if fsync else "false")


def run(build, tier, mb, segment_mb, fsync):
    """One run; returns a dict of figures."""
    skald = os.path.join(build, "skald")
    plugin = os.path.join(build, "plugins", tier + ".so")
    tmp = tempfile.mkdtemp(prefix="skald-tier-bench-")
    port = free_port()
    conf = os.path.join(tmp, "skald.yaml")
    s3 = None
    s3_port = 0
    if tier == "tier-s3":
        s3, s3_port = start_s3rver(tmp)
    with open(conf, "w") as f:
        f.write("""\
listeners: 127.0.0.1:%d
log.dir: %s/data
remote.log.manager.task.interval.ms: 100
plugins:
  - path: %s
    config: %s
storage:
  tier: %s
topics:
  bench:
    partitions: 1
    configs:
      remote.storage.enable: "true"
      local.retention.ms: "0"
      segment.bytes: "%d"
""" % (port, tmp, plugin, tier_config(tier, tmp, fsync, s3_port), tier,
            segment_mb << 20))
    logpath = os.path.join(tmp, "skald.log")
    log = open(logpath, "ab")
    bs = "127.0.0.1:%d" % port
    try:
        p = start(skald, conf, log, port)
        prod = Producer({"bootstrap.servers": bs, "linger.ms": 5,
                         "batch.size": 1 << 20, "acks": "all"})
        value = os.urandom(1024)
        n = mb * 1024
        t0 = time.monotonic()
        for i in range(n):
            while True:
                try:
                    prod.produce("bench", value, partition=0)
                    break
                except BufferError:
                    prod.poll(0.05)
        prod.flush(120)
        t_prod = time.monotonic()
        closed = (mb // segment_mb) - 1
        copied = []
        while time.monotonic() - t_prod < 600:
            with open(logpath, "rb") as f:
                copied = re.findall(
                    rb"(\d\d):(\d\d):(\d\d\.\d+)Z info  remote: topic bench "
                    rb"partition 0: copied segment \d+ \(offsets [\d-]+, "
                    rb"(\d+) bytes\)", f.read())
            if len(copied) >= closed:
                break
            time.sleep(0.05)
        lag = time.monotonic() - t_prod

        def secs(m):
            return int(m[0]) * 3600 + int(m[1]) * 60 + float(m[2])
        span = secs(copied[-1]) - secs(copied[0]) if len(copied) > 1 else 0
        moved = sum(int(m[3]) for m in copied[1:]) / (1 << 20)
        stop(p)
        p = start(skald, conf, log, port)
        cold = first_record_ms(bs, "bench")
        warm = first_record_ms(bs, "bench")
        stop(p)
        return {"tier": tier, "mb": mb, "segment_mb": segment_mb,
                "fsync": fsync, "produce": mb / (t_prod - t0),
                "offload": moved / span if span > 0 else float("nan"),
                "segments": len(copied), "lag": lag, "cold": cold,
                "warm": warm}
    finally:
        log.close()
        if s3:
            s3.terminate()
            s3.wait(30)
        shutil.rmtree(tmp, True)


def show(r):
    print("tier %s, %d MiB in %d MiB segments, fsync %s" %
          (r["tier"], r["mb"], r["segment_mb"], "on" if r["fsync"] else "off"))
    print("produce  %.1f MiB/s" % r["produce"])
    print("offload  %.1f MiB/s (%d segments)" % (r["offload"], r["segments"]))
    print("lag      %.2f s after the last produce" % r["lag"])
    print("cold     %.1f ms to the first record at offset 0" % r["cold"])
    print("warm     %.1f ms" % r["warm"])
    sys.stdout.flush()


def write_results(build, mb):
    runs = [("tier-fs", 8, False), ("tier-fs", 8, True),
            ("tier-s3", 8, False), ("tier-s3", 32, False)]
    rows = []
    for tier, seg, fsync in runs:
        r = run(build, tier, mb, seg, fsync)
        show(r)
        cmd = "bench/tier_bench.py --tier %s --mb %d --segment-mb %d%s" % (
            tier, mb, seg, " --fsync" if fsync else "")
        how = {"tier-fs": "directory, fsync %s" % ("on" if fsync else "off"),
               "tier-s3": "s3rver, %s" % ("multipart, 8 MiB parts"
                                           if seg > 8 else "single PUTs")}
        rows.append("| %s (%s) | %d MiB | `%s` | %.1f MiB/s | %.2f s | "
                    "%.0f ms | %.1f ms |" % (
                        tier, how[tier], seg, cmd, r["offload"], r["lag"],
                        r["cold"], r["warm"]))
    out = os.path.join(REPO, "bench", "RESULTS-tier.md")
    with open(out, "w") as f:
        f.write("""\
## Tiered storage (issue 6)

Measured with `bench/tier_bench.py` on this 2-core machine: %d MiB of
1 KiB random records produced to one partition with
`remote.storage.enable` and `local.retention.ms: 0`, broker, client and
object store together on loopback. tier-s3 talks to s3rver (tests/s3, a
Node.js S3 server writing files, which is the bottleneck here: a real
store over a network has other limits). Offload is MiB/s between the
first and last "copied segment" log lines (checksums, upload, manifest);
lag is from the end of producing until every closed segment was in the
tier; cold is the time to the first record at offset 0 after a restart
(download of a whole segment, CRC-32C and batch checks, then the fetch),
warm the same fetch from the cache. One run each, on a machine other work
shared: repeated runs vary by up to a factor of two (the fsync-on row
beating fsync-off is that noise, not a property of fsync).

| tier | segment | command | offload | lag | cold fetch | warm fetch |
|---|---|---|---|---|---|---|
%s
""" % (mb, "\n".join(rows)))
    print("wrote %s" % out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--segment-mb", type=int, default=8)
    ap.add_argument("--tier", default="tier-fs",
                    choices=["tier-fs", "tier-s3"])
    ap.add_argument("--fsync", action="store_true")
    ap.add_argument("--results", action="store_true",
                    help="run the standard set, write bench/RESULTS-tier.md")
    a = ap.parse_args()
    if a.results:
        write_results(a.build, a.mb)
    else:
        show(run(a.build, a.tier, a.mb, a.segment_mb, a.fsync))


if __name__ == "__main__":
    main()
