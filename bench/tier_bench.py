#!/usr/bin/python3
"""Tiered storage benchmark (issue 6): offload throughput to a storage
tier and the latency of a cold fetch from it. Not part of `make test`.

    bench/tier_bench.py [--build build] [--mb 256] [--segment-mb 8]
                        [--tier tier-fs] [--fsync]

Starts build/skald with the tier plugin on loopback (tier-fs: a directory
under TMPDIR, on the same disk as the data), produces --mb MiB of 1 KiB
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--segment-mb", type=int, default=8)
    ap.add_argument("--tier", default="tier-fs")
    ap.add_argument("--fsync", action="store_true")
    a = ap.parse_args()

    skald = os.path.join(a.build, "skald")
    plugin = os.path.join(a.build, "plugins", a.tier + ".so")
    tmp = tempfile.mkdtemp(prefix="skald-tier-bench-")
    port = free_port()
    conf = os.path.join(tmp, "skald.yaml")
    with open(conf, "w") as f:
        f.write("""\
listeners: 127.0.0.1:%d
log.dir: %s/data
remote.log.manager.task.interval.ms: 100
plugins:
  - path: %s
    config: { root: %s/tier, fsync: %s }
storage:
  tier: %s
topics:
  bench:
    partitions: 1
    configs:
      remote.storage.enable: "true"
      local.retention.ms: "0"
      segment.bytes: "%d"
""" % (port, tmp, plugin, tmp, "true" if a.fsync else "false", a.tier,
            a.segment_mb << 20))
    logpath = os.path.join(tmp, "skald.log")
    log = open(logpath, "ab")
    bs = "127.0.0.1:%d" % port
    try:
        p = start(skald, conf, log, port)
        prod = Producer({"bootstrap.servers": bs, "linger.ms": 5,
                         "batch.size": 1 << 20, "acks": "all"})
        value = os.urandom(1024)
        n = a.mb * 1024
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
        closed = (a.mb // a.segment_mb) - 1
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
        mb = sum(int(m[3]) for m in copied[1:]) / (1 << 20)
        stop(p)
        p = start(skald, conf, log, port)
        cold = first_record_ms(bs, "bench")
        warm = first_record_ms(bs, "bench")
        stop(p)
        print("tier %s, %d MiB in %d MiB segments, fsync %s" %
              (a.tier, a.mb, a.segment_mb, "on" if a.fsync else "off"))
        print("produce  %.1f MiB/s" % (a.mb / (t_prod - t0)))
        print("offload  %.1f MiB/s (%d segments)" %
              (mb / span if span > 0 else float("nan"), len(copied)))
        print("lag      %.2f s after the last produce" % lag)
        print("cold     %.1f ms to the first record at offset 0" % cold)
        print("warm     %.1f ms" % warm)
    finally:
        log.close()
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
