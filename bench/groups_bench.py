#!/usr/bin/python3
"""Consumer-group benchmarks for Skald (issue 3).

  commits    offset commits per second from many consumers: C connections,
             each a consumer committing to its own group (standalone
             commits, generation -1) with W requests in flight and P
             partitions per request. Every answered commit is durable (the
             broker answers after its group-commit transaction is fsynced).
  rebalance  time from a member leaving a group of M librdkafka consumers
             to the group being Stable again with M-1 members, as seen by
             polling DescribeGroups.

Each run starts its own broker (build/skald, or --skald) on a free
loopback port with a temporary data directory, unless --bootstrap is
given. Prints one line per figure, ready for bench/RESULTS.md.

  bench/groups_bench.py commits [--consumers 64] [--window 16]
                                [--partitions 1] [--seconds 10]
  bench/groups_bench.py rebalance [--members 10] [--heartbeat-ms 3000]
"""

import argparse
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Skald:
    def __init__(self, binary, args=()):
        self.tmp = tempfile.mkdtemp(prefix="skald-bench-")
        self.port = free_port()
        self.log = open(os.path.join(self.tmp, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:%d" % self.port, "--data-dir",
             os.path.join(self.tmp, "data")] + list(args),
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("skald did not start")
                time.sleep(0.02)

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def s16(x):
    x = x.encode()
    return struct.pack(">h", len(x)) + x


def frame(key, ver, corr, body):
    msg = struct.pack(">hhi", key, ver, corr) + s16("bench") + body
    return struct.pack(">i", len(msg)) + msg


def create_topic(host, port, name, partitions):
    """CreateTopics v0, one topic; waits for the answer."""
    body = (struct.pack(">i", 1) + s16(name) +
            struct.pack(">ihii", partitions, 1, 0, 0) +
            struct.pack(">i", 10000))
    with socket.create_connection((host, port), 5) as s:
        s.sendall(frame(19, 0, 1, body))
        s.recv(65536)


def commit_request(group, topic, partitions, offset):
    """OffsetCommit v2 (kafka-python's version): a standalone commit."""
    parts = b"".join(struct.pack(">iq", p, offset) + s16("")
                     for p in range(partitions))
    body = (s16(group) + struct.pack(">i", -1) + s16("") +
            struct.pack(">q", -1) + struct.pack(">i", 1) + s16(topic) +
            struct.pack(">i", partitions) + parts)
    return frame(8, 2, 0, body)


def bench_commits(a, bootstrap):
    host, port = bootstrap.rsplit(":", 1)
    port = int(port)
    create_topic(host, port, "bench-commits", a.partitions)
    time.sleep(0.2)
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(a.consumers):
        s = socket.create_connection((host, port))
        s.setblocking(False)
        req = commit_request("bench-group-%d" % i, "bench-commits",
                             a.partitions, 1000 + i)
        c = {"s": s, "req": req, "out": b"", "in": bytearray(),
             "inflight": 0, "done": 0}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    answered = 0
    t0 = time.monotonic()
    end = t0 + a.seconds
    latencies = []
    while time.monotonic() < end:
        for c in conns:
            want = a.window - c["inflight"]
            if want > 0:
                c["out"] += c["req"] * want
                c["inflight"] += want
            if c["out"]:
                try:
                    n = c["s"].send(c["out"])
                    c["out"] = c["out"][n:]
                except BlockingIOError:
                    pass
        for key, _ in sel.select(0.05):
            c = key.data
            try:
                data = c["s"].recv(1 << 20)
            except BlockingIOError:
                continue
            c["in"] += data
            buf = c["in"]
            off = 0
            while len(buf) - off >= 4:
                (n,) = struct.unpack_from(">i", buf, off)
                if len(buf) - off < 4 + n:
                    break
                off += 4 + n
                c["inflight"] -= 1
                answered += 1
            del buf[:off]
    took = time.monotonic() - t0
    for c in conns:
        c["s"].close()
    del latencies
    reqs = answered / took
    print("offset commits: %d consumers, %d in flight each, %d "
          "partition(s) per request: %.0f requests/s, %.0f commits/s "
          "(%.1f s)" % (a.consumers, a.window, a.partitions, reqs,
                        reqs * a.partitions, took))
    return reqs * a.partitions


def describe(host, port, group):
    """(state, n_members) via DescribeGroups v0."""
    with socket.create_connection((host, port), 5) as s:
        s.sendall(frame(15, 0, 1, struct.pack(">i", 1) + s16(group)))
        hdr = s.recv(4)
        (n,) = struct.unpack(">i", hdr)
        buf = b""
        while len(buf) < n:
            buf += s.recv(n - len(buf))
    off = 4 + 4 + 2  # corr, array len, error
    for _ in range(2):  # group id, state
        (ln,) = struct.unpack_from(">h", buf, off)
        if _ == 1:
            state = buf[off + 2:off + 2 + ln].decode()
        off += 2 + ln
    for _ in range(2):  # protocol type, protocol
        (ln,) = struct.unpack_from(">h", buf, off)
        off += 2 + ln
    (members,) = struct.unpack_from(">i", buf, off)
    return state, members


def bench_rebalance(a, bootstrap):
    from confluent_kafka import Consumer
    host, port = bootstrap.rsplit(":", 1)
    port = int(port)
    create_topic(host, port, "bench-rebalance", a.members * 2)
    group = "bench-rebalance"
    stop = threading.Event()
    cons = []

    def poll_loop(c, ev):
        while not ev.is_set():
            c.poll(0.05)

    for i in range(a.members):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "session.timeout.ms": 10000,
                      "heartbeat.interval.ms": a.heartbeat_ms,
                      "client.id": "m%d" % i})
        c.subscribe(["bench-rebalance"])
        ev = threading.Event()
        t = threading.Thread(target=poll_loop, args=(c, ev), daemon=True)
        t.start()
        cons.append((c, ev, t))
    deadline = time.monotonic() + 60
    while describe(host, port, group) != ("Stable", a.members):
        if time.monotonic() > deadline:
            raise SystemExit("group never became stable")
        time.sleep(0.05)
    times = []
    for round_ in range(a.rounds):
        c, ev, t = cons.pop()
        ev.set()
        t.join()
        t0 = time.monotonic()
        c.close()  # LeaveGroup
        want = ("Stable", len(cons))
        while describe(host, port, group) != want:
            time.sleep(0.005)
        times.append(time.monotonic() - t0)
    stop.set()
    for c, ev, t in cons:
        ev.set()
        t.join()
        c.close()
    times.sort()
    print("rebalance after a member leaves (%d librdkafka members, "
          "heartbeat.interval.ms %d): median %.0f ms, max %.0f ms over %d "
          "leaves" % (a.members, a.heartbeat_ms,
                      times[len(times) // 2] * 1000, times[-1] * 1000,
                      len(times)))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.
                                RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["commits", "rebalance"])
    p.add_argument("--bootstrap")
    p.add_argument("--skald", default=os.path.join(REPO, "build", "skald"))
    p.add_argument("--consumers", type=int, default=64)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--heartbeat-ms", type=int, default=3000)
    a = p.parse_args()
    broker = None
    bootstrap = a.bootstrap
    if not bootstrap:
        broker = Skald(a.skald, ["--set",
                                 "group.initial.rebalance.delay.ms=0"])
        bootstrap = broker.bootstrap
    try:
        if a.what == "commits":
            bench_commits(a, bootstrap)
        else:
            bench_rebalance(a, bootstrap)
    finally:
        if broker:
            broker.close()


if __name__ == "__main__":
    sys.exit(main())
