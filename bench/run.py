#!/usr/bin/python3
"""Skald's benchmark matrix (issue 7), run by `make bench`.

Every comparison is measured side by side in the same run: each repeat
starts every system afresh on loopback, in an order that alternates from
one repeat to the next, and a ratio is taken within the repeat. Figures are
min/median/max over the repeats; a verdict uses the median ratio.

Systems:
  skald   build/skald, a fresh data directory per run
  mock    build/skald-mock, librdkafka's in-memory mock cluster
  redis   Debian's redis-server, XADD through redis-benchmark, AOF with
          appendfsync always (the peer of acks=all) and everysec
  floors  loopback TCP throughput and append+fdatasync latency, measured
          by build/skald-bench on the same machine and disk

Environment:
  BENCH_QUICK=1      a ~30 s smoke run (fewer records, one repeat, scale
                     tests scaled down; verdicts not authoritative)
  BENCH_REPEATS=N    repeats per comparison (5)
  BENCH_PARTITIONS   partitions of the produce topics (4)
  BENCH_PRODUCERS    producer instances of the produce runs (2)
  BENCH_PROFILE=0    no perf profile, even when a target is missed
  TMPDIR             where data directories go (the disk that is measured)

Writes the report given by --out (bench/RESULTS.md) and includes
bench/NOTES.md, the hand-written analysis, when present.
"""

import argparse
import glob
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# ------------------------------------------------------------ parameters


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


class Params:
    def __init__(self, quick):
        self.quick = quick
        self.repeats = env_int("BENCH_REPEATS", 1 if quick else 5)
        self.partitions = env_int("BENCH_PARTITIONS", 4)
        self.producers = env_int("BENCH_PRODUCERS", 2)
        self.n_produce = 200000 if quick else 1000000
        self.n_redis = 100000 if quick else 300000
        # The mock keeps about 5 MB per partition and drops older data,
        # so the consume topic has enough partitions to hold it all.
        self.consume_partitions = 64
        self.n_consume = 200000 if quick else 2000000
        self.n_lat1 = 1000 if quick else 5000
        self.n_lat_all = 300 if quick else 500
        # The disk's latency drifts with other load: more, shorter
        # repeats for the acks=all against fdatasync comparison.
        self.lat_all_repeats = 1 if quick else max(5, self.repeats)
        self.n_fsync = 300 if quick else 500
        self.n_prof = 200000 if quick else 3000000
        self.n_prof_1k = 50000 if quick else 1000000
        self.n_1k = 50000 if quick else 300000
        self.n_e2e = 2000 if quick else 10000
        self.e2e_rate = 5000
        self.scale_partitions = 1000 if quick else 10000
        self.scale_connections = 1000 if quick else 10000
        self.start_repeats = 1 if quick else 3
        self.redis_clients = 50
        self.redis_pipeline = 16


# ------------------------------------------------------------ helpers

LOG = []        # (section, command) in the order run, first repeat only
res_errors = []  # failed client runs, for the report
SECTION = [""]  # the section commands are logged under


WORK = [None]   # the run's temporary directory, shown as $WORK


def log_cmd(cmd):
    """Log a command once per section, with this run's ports, PIDs and
    temporary names replaced by placeholders."""
    text = " ".join(shlex_quote(c) for c in cmd)
    text = text.replace(REPO + "/", "")
    if WORK[0]:
        text = text.replace(WORK[0], "$WORK")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", text)
    text = re.sub(r"--broker-pid \d+", "--broker-pid $PID", text)
    text = re.sub(r"--port \d+", "--port $PORT", text)
    if cmd[0] in ("perf", "strace"):
        text = re.sub(r" -p \d+", " -p $PID", text)
    else:
        text = re.sub(r" -p \d+", " -p $PORT", text)
    text = re.sub(r"(skald-bench|redis-bench|fsync)-[A-Za-z0-9_]{8}\b",
                  r"\1-XXXXXXXX", text)
    if (SECTION[0], text) not in LOG:
        LOG.append((SECTION[0], text))


def shlex_quote(s):
    s = str(s)
    if re.fullmatch(r"[A-Za-z0-9_./:=,@%+-]+", s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


def say(msg):
    sys.stderr.write("bench: " + msg + "\n")
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("exited with %d before listening"
                               % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("port %d not open after %.0f s" % (port, timeout))


def proc_cpu_s(pid):
    """utime+stime of a process in seconds, from /proc/PID/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def stop_proc(proc, timeout=15):
    """SIGTERM the process we started, by its PID; SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stats(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return (min(vals), statistics.median(vals), max(vals))


# ------------------------------------------------------------ systems


class Skald:
    name = "skald"

    def __init__(self, env, sets=()):
        self.env = env
        self.sets = list(sets)
        self.proc = None
        self.dir = None

    def start(self, topics=(), keep_dir=False):
        if not keep_dir or not self.dir:
            self.dir = tempfile.mkdtemp(prefix="skald-bench-",
                                        dir=self.env.work)
        self.port = free_port()
        cmd = [self.env.skald, "--listen", "127.0.0.1:%d" % self.port,
               "--data-dir", self.dir, "--set", "log.level=warn"]
        for s in self.sets:
            cmd += ["--set", s]
        log_cmd(cmd)
        self.log = open(os.path.join(self.env.work, "skald.log"), "ab")
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log,
                                     stderr=self.log)
        wait_port(self.port, 30, self.proc)
        self.bootstrap = "127.0.0.1:%d" % self.port
        for name, parts in topics:
            self.env.bench(self, ["-m", "create", "-t", name,
                                  "--create-partitions", str(parts)],
                           timeout=900)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, keep_dir=False, timeout=15):
        if self.proc:
            stop_proc(self.proc, timeout)
            rc = self.proc.returncode
            self.proc = None
            self.log.close()
            if rc not in (0, -signal.SIGTERM):
                with open(os.path.join(self.env.work, "skald.log"),
                          "rb") as f:
                    tail = f.read()[-600:].decode("utf-8", "replace")
                say("skald exited with %s: %s" % (rc, tail))
        if not keep_dir and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class Mock:
    name = "mock"

    def __init__(self, env):
        self.env = env
        self.proc = None

    def start(self, topics=()):
        cmd = [self.env.mock]
        for name, parts in topics:
            cmd += ["--topic", "%s:%d" % (name, parts)]
        log_cmd(cmd)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            raise RuntimeError("skald-mock printed no address")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc:
            stop_proc(self.proc)
            self.proc.stdout.close()
            self.proc = None


class Redis:
    def __init__(self, env, fsync):
        self.env = env
        self.fsync = fsync
        self.name = "redis-" + fsync
        self.proc = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="redis-bench-", dir=self.env.work)
        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind",
               "127.0.0.1", "--dir", self.dir, "--appendonly", "yes",
               "--appendfsync", self.fsync, "--save", "",
               "--daemonize", "no", "--logfile",
               os.path.join(self.dir, "redis.log")]
        log_cmd(cmd)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def xadd(self, n, size, clients, pipeline):
        """redis-benchmark running XADD s * f <size bytes>."""
        value = ("x" * size)
        cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.port),
               "-c", str(clients), "-P", str(pipeline), "-n", str(n),
               "--csv", "XADD", "s", "*", "f", value]
        log_cmd(cmd[:-1] + ["<%d B>" % size])
        cpu0 = proc_cpu_s(self.pid)
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=600)
        wall = time.monotonic() - t0
        cpu1 = proc_cpu_s(self.pid)
        rps = None
        for line in out.stdout.splitlines():
            cells = [c.strip('"') for c in line.split('","')]
            if cells and cells[0].startswith("XADD") and len(cells) > 1:
                rps = float(cells[1].strip('"'))
        if rps is None:
            raise RuntimeError("redis-benchmark: no figure in %r"
                               % out.stdout[-300:])
        return {"msgs_per_s": rps, "mb_per_s": rps * size / 1e6,
                "broker": {"cpu_s": cpu1 - cpu0 if cpu0 is not None
                           else -1, "vmhwm_kb":
                           proc_status_kb(self.pid, "VmHWM")},
                "wall_s": wall, "lat_us": {}}

    def stop(self):
        if self.proc:
            stop_proc(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------ the harness


class Env:
    def __init__(self, build, params):
        self.p = params
        self.skald = os.path.join(build, "skald")
        self.mock = os.path.join(build, "skald-mock")
        self.bench_bin = os.path.join(build, "skald-bench")
        self.work = tempfile.mkdtemp(prefix="skald-bench-run-")
        WORK[0] = self.work

    def bench(self, system, args, timeout=600):
        """Run build/skald-bench against a system, return its JSON."""
        cmd = [self.bench_bin, "-b", system.bootstrap] + args + ["--json"]
        if system is not None and getattr(system, "proc", None):
            cmd += ["--broker-pid", str(system.pid)]
        log_cmd(cmd)
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=timeout)
        res = None
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                res = json.loads(line)
        if res is None:
            raise RuntimeError("skald-bench failed (%d): %s"
                               % (out.returncode, out.stderr.strip()[-500:]))
        if out.returncode != 0:
            res["failed"] = "exit %d, %d records, %d errors: %s" % (
                out.returncode, res.get("msgs", 0), res.get("errors", 0),
                res.get("note") or out.stderr.strip()[-300:])
            say("  %s: %s" % (system.name, res["failed"]))
            res_errors.append("%s, %s: %s" % (SECTION[0], system.name,
                                             res["failed"]))
        return res

    def floor(self, args, timeout=600):
        cmd = [self.bench_bin] + args + ["--json"]
        log_cmd(cmd)
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("skald-bench %s: %s"
                               % (" ".join(args), out.stderr.strip()))
        return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(r, systems):
    """Repeat r runs the systems in order, repeat r+1 in reverse."""
    return list(systems) if r % 2 == 0 else list(reversed(systems))


class Results:
    def __init__(self):
        self.sections = []   # (title, intro, rows, note)
        self.targets = []    # dicts: target, measured, required, verdict
        self.errors = []

    def section(self, title, intro, header, rows, note=""):
        self.sections.append((title, intro, header, rows, note))

    def target(self, name, measured, required, ok, judged=True):
        if ok is None:
            verdict = "n/a"
        elif not judged:
            verdict = "(PASS)" if ok else "(MISS)"
        else:
            verdict = "PASS" if ok else "MISS"
        self.targets.append({"target": name, "measured": measured,
                             "required": required, "verdict": verdict})


def fmt_rate(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e4:
        return "%.0fk" % (v / 1e3)
    return "%.0f" % v


def fmt_3(tri, f):
    if tri is None:
        return "-"
    return "%s / **%s** / %s" % (f(tri[0]), f(tri[1]), f(tri[2]))


def f_rate(v):
    return fmt_rate(v)


def f_mb(v):
    return "%.1f" % v


def f_us(v):
    return "%.0f" % v if v >= 100 else "%.1f" % v


def f_ratio(v):
    return "%.2f×" % v


def f_s(v):
    return "%.2f" % v


def f_kb_mb(v):
    return "%.1f" % (v / 1024.0)


def f_int(v):
    return "%d" % v


def run_pairs(env, res, label, systems, make_topics, run_one, repeats):
    """Alternate systems over repeats; returns {name: [result per repeat]}."""
    out = {s.name: [] for s in systems}
    for r in range(repeats):
        for s in alternate(r, systems):
            try:
                s.start(make_topics(s)) if make_topics else s.start()
                out[s.name].append(run_one(s))
            except Exception as e:  # keep going: the report says what broke
                say("  %s %s: %s" % (label, s.name, e))
                res.errors.append("%s, %s: %s" % (label, s.name, e))
                out[s.name].append(None)
            finally:
                s.stop()
    return out


def field(results, *path):
    vals = []
    for r in results:
        if r is None or r.get("failed"):
            vals.append(None)
            continue
        v = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        vals.append(v)
    return vals


def ratios(a, b):
    return [x / y if x is not None and y else None for x, y in zip(a, b)]


def throughput_rows(out, order):
    rows = []
    for name in order:
        rs = out[name]
        rows.append([name,
                     fmt_3(stats(field(rs, "msgs_per_s")), f_rate),
                     fmt_3(stats(field(rs, "mb_per_s")), f_mb),
                     fmt_3(stats(field(rs, "lat_us", "p50")),
                           lambda v: "%.1f" % (v / 1000)),
                     fmt_3(stats(field(rs, "broker", "cpu_s")), f_s),
                     fmt_3(stats(field(rs, "client_cpu_s")), f_s),
                     fmt_3(stats(field(rs, "broker", "vmhwm_kb")), f_kb_mb)])
    return rows


TP_HEADER = ["system", "msgs/s", "MB/s", "delivery p50 ms",
             "broker CPU s", "client CPU s", "broker peak RSS MB"]


# ------------------------------------------------------------ sections


def sec_produce(env, res, acks):
    p = env.p
    SECTION[0] = "produce acks=%s" % acks
    say("produce, acks=%s" % acks)
    topic = "produce"
    systems = [Skald(env), Mock(env)]
    args = ["-m", "produce", "-t", topic, "-n", str(p.n_produce), "-s",
            "100", "-k", str(p.producers), "-a", acks]

    def run_one(s):
        return env.bench(s, args)

    out = run_pairs(env, res, SECTION[0], systems,
                    lambda s: [(topic, p.partitions)], run_one, p.repeats)
    order = ["skald", "mock"]
    redis_out = {}
    if acks == "all" and shutil.which("redis-benchmark"):
        for fs in ("always", "everysec"):
            rd = Redis(env, fs)
            rs = []
            for r in range(p.repeats):
                try:
                    rd.start()
                    rs.append(rd.xadd(p.n_redis, 100, p.redis_clients,
                                      p.redis_pipeline))
                except Exception as e:
                    res.errors.append("redis %s: %s" % (fs, e))
                    rs.append(None)
                finally:
                    rd.stop()
            out[rd.name] = rs
            order.append(rd.name)
            redis_out[fs] = rs
    rows = throughput_rows(out, order)
    sk = field(out["skald"], "msgs_per_s")
    mk = field(out["mock"], "msgs_per_s")
    rat = stats(ratios(sk, mk))
    rows.append(["skald ÷ mock", fmt_3(rat, f_ratio), "", "", "", "", ""])
    need = 0.8 if acks == "1" else 0.7
    res.target("produce acks=%s ≥ %.1f× mock" % (acks, need),
               fmt_3(rat, f_ratio), "≥ %.1f×" % need,
               rat[1] >= need if rat else None, not p.quick)
    name = "produce acks=all ≥ 3× Redis XADD appendfsync always"
    if acks == "all":
        if "always" in redis_out:
            rr = stats(ratios(sk, field(redis_out["always"], "msgs_per_s")))
            rows.append(["skald ÷ redis-always", fmt_3(rr, f_ratio), "", "",
                         "", ""])
            res.target(name, fmt_3(rr, f_ratio), "≥ 3×",
                       rr[1] >= 3 if rr else None, not p.quick)
        else:
            res.target(name, "redis-benchmark not installed", "≥ 3×",
                       None)
    intro = ("%d records of 100 B to %d partitions, %d producer instances "
             "(librdkafka defaults otherwise: linger.ms 5, batch.size 1 MB), "
             "acks=%s; each repeat starts every system afresh, order "
             "alternating." % (p.n_produce, p.partitions, p.producers, acks))
    if acks == "all":
        intro += (" Redis: redis-benchmark XADD s * f <100 B>, %d clients, "
                  "pipeline %d, %d commands, AOF on."
                  % (p.redis_clients, p.redis_pipeline, p.n_redis))
    res.section("Produce, acks=%s" % acks, intro, TP_HEADER, rows,
                "delivery p50 is enqueue-to-acknowledgement inside a "
                "saturated producer, mostly queueing in the client.")
    return out


def sec_consume(env, res):
    p = env.p
    SECTION[0] = "consume"
    say("consume")
    topic = "consume"
    systems = [Skald(env), Mock(env)]

    def run_one(s):
        env.bench(s, ["-m", "produce", "-t", topic, "-n", str(p.n_consume),
                      "-s", "100", "-a", "1"])
        return env.bench(s, ["-m", "consume", "-t", topic, "-n",
                             str(p.n_consume)])

    out = run_pairs(env, res, "consume", systems,
                    lambda s: [(topic, p.consume_partitions)], run_one,
                    p.repeats)
    rows = throughput_rows(out, ["skald", "mock"])
    for r in rows:
        r[3] = ""
    rat = stats(ratios(field(out["skald"], "msgs_per_s"),
                       field(out["mock"], "msgs_per_s")))
    rows.append(["skald ÷ mock", fmt_3(rat, f_ratio), "", "", "", "", ""])
    res.target("consume ≥ 0.9× mock", fmt_3(rat, f_ratio), "≥ 0.9×",
               rat[1] >= 0.9 if rat else None, not p.quick)
    res.section("Consume", "%d records of 100 B produced (acks=1, untimed) "
                "to %d partitions, then read from the beginning by one "
                "consumer (all partitions on one queue); timed from the "
                "first record to the last. Skald's data is in the page cache."
                % (p.n_consume, p.consume_partitions),
                TP_HEADER, rows)


class FsyncFloor:
    """append+fdatasync of 100 B in a directory on the brokers' disk,
    shaped like a system so that it alternates with them."""
    name = "fsync"

    def __init__(self, env):
        self.env = env
        self.dir = None
        self.proc = None

    def start(self, topics=()):
        self.dir = tempfile.mkdtemp(prefix="fsync-", dir=self.env.work)
        return self

    def run(self, n):
        return self.env.floor(["-m", "fsync", "--dir", self.dir, "-n",
                               str(n), "-s", "100"])

    def stop(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def sec_latency(env, res):
    p = env.p
    say("one-in-flight latency")
    topic = "lat"
    out = {}
    for acks, n in (("1", p.n_lat1), ("all", p.n_lat_all)):
        SECTION[0] = "latency acks=%s" % acks
        systems = [Skald(env), Mock(env)]
        if acks == "all":
            # The disk is shared and its latency drifts: the floor is
            # measured in the same rotation as the brokers.
            systems.append(FsyncFloor(env))
        args = ["-m", "latency", "-t", topic, "-n", str(n), "-s", "100",
                "-a", acks]

        def run_one(s, args=args):
            if isinstance(s, FsyncFloor):
                return s.run(p.n_fsync)
            return env.bench(s, args)

        out[acks] = run_pairs(env, res, SECTION[0], systems,
                              lambda s: [(topic, 1)], run_one,
                              p.lat_all_repeats if acks == "all"
                              else p.repeats)
    fs = out["all"]["fsync"]
    rows = []
    for acks in ("1", "all"):
        for name in ("skald", "mock"):
            rs = out[acks][name]
            rows.append(["%s acks=%s" % (name, acks)] +
                        [fmt_3(stats(field(rs, "lat_us", q)), f_us)
                         for q in ("p50", "p99", "p999")] +
                        [fmt_3(stats(field(rs, "msgs_per_s")), f_rate)])
    rows.append(["append+fdatasync 100 B"] +
                [fmt_3(stats(field(fs, "lat_us", q)), f_us)
                 for q in ("p50", "p99", "p999")] +
                [fmt_3(stats(field(fs, "msgs_per_s")), f_rate)])
    # acks=1: skald p50 <= 2x mock p50, per repeat
    s1 = field(out["1"]["skald"], "lat_us", "p50")
    m1 = field(out["1"]["mock"], "lat_us", "p50")
    r1 = stats(ratios(s1, m1))
    res.target("latency acks=1 p50 ≤ 2× mock", fmt_3(r1, f_ratio) +
               " (skald %s µs, mock %s µs)" % (
                   f_us(stats(s1)[1]) if stats(s1) else "-",
                   f_us(stats(m1)[1]) if stats(m1) else "-"),
               "≤ 2×", r1[1] <= 2 if r1 else None, not p.quick)
    # acks=all: skald p50 - (mock p50 + fdatasync p50), per repeat
    sa = field(out["all"]["skald"], "lat_us", "p50")
    ma = field(out["all"]["mock"], "lat_us", "p50")
    fa = field(fs, "lat_us", "p50")
    excess = [s - m - f if None not in (s, m, f) else None
              for s, m, f in zip(sa, ma, fa)]
    ex = stats(excess)
    name = "latency acks=all p50 ≤ mock p50 + fdatasync p50 + 30 µs"
    if ex:
        res.target(name, "excess %s µs (skald %s, mock %s, fdatasync %s)"
                   % (fmt_3(ex, lambda v: "%+.0f" % v),
                      f_us(stats(sa)[1]), f_us(stats(ma)[1]),
                      f_us(stats(fa)[1])),
                   "excess ≤ +30 µs", ex[1] <= 30, not p.quick)
    else:
        res.target(name, "not measured", "", None)
    res.section("One-in-flight produce latency",
                "One producer, linger.ms=0, one record of 100 B in flight: "
                "produce, wait for the delivery report, repeat (%d records "
                "at acks=1, %d at acks=all, 100 unmeasured first). The "
                "fdatasync floor appends 100 B to a file in the same "
                "directory tree as the brokers' data and fdatasyncs, %d "
                "times, in the same rotation as the acks=all runs; the "
                "acks=all target is judged on the per-repeat excess, skald "
                "p50 − mock p50 − fdatasync p50, over %d repeats. "
                "Latencies in µs."
                % (p.n_lat1, p.n_lat_all, p.n_fsync, p.lat_all_repeats),
                ["", "p50", "p99", "p99.9", "records/s"], rows)


def sec_e2e(env, res):
    p = env.p
    SECTION[0] = "e2e"
    say("end-to-end latency")
    topic = "e2e"
    args = ["-m", "e2e", "-t", topic, "-n", str(p.n_e2e), "-s", "100",
            "--rate", str(p.e2e_rate)]
    out = run_pairs(env, res, "e2e", [Skald(env), Mock(env)],
                    lambda s: [(topic, p.partitions)],
                    lambda s: env.bench(s, args), min(3, p.repeats))
    rows = []
    for name in ("skald", "mock"):
        rows.append([name] + [fmt_3(stats(field(out[name], "lat_us", q)),
                                    lambda v: "%.1f" % (v / 1000))
                              for q in ("p50", "p99", "p999")])
    res.section("End-to-end latency (informational)",
                "One producer at %d records/s (acks=1, linger.ms 5) and one "
                "consumer in the same process with librdkafka's defaults "
                "(fetch.wait.max.ms 500), taking records one at a time; the "
                "record carries its send time. %d records. Latencies in ms. "
                "No target: the "
                "mock answers an empty fetch only when fetch.wait.max.ms "
                "expires, so its figure is the fetch wait, not a broker cost."
                % (p.e2e_rate, p.n_e2e),
                ["", "p50", "p99", "p99.9"], rows)


def sec_1k(env, res):
    p = env.p
    SECTION[0] = "1 KiB"
    say("1 KiB records vs loopback")
    topic = "big"
    args = ["-m", "produce", "-t", topic, "-n", str(p.n_1k), "-s", "1024",
            "-k", str(p.producers), "-a", "1"]
    out = run_pairs(env, res, "1 KiB", [Skald(env), Mock(env)],
                    lambda s: [(topic, p.partitions)],
                    lambda s: env.bench(s, args), p.repeats)
    loop_big, loop_1k, pc = [], [], []
    total = 1 << 30 if not p.quick else 1 << 28
    for r in range(p.repeats):
        pc.append(pagecache_write(env, 256 if not p.quick else 64))
        loop_big.append(env.floor(["-m", "loopback", "-s", "65536", "-n",
                                   str(total // 65536)]))
        loop_1k.append(env.floor(["-m", "loopback", "-s", "1024", "-n",
                                  str(total // 1024 // 4)]))
    rows = throughput_rows(out, ["skald", "mock"])
    rows.append(["loopback, 64 KiB writes",
                 fmt_3(stats([x["msgs_per_s"] for x in loop_big]), f_rate),
                 fmt_3(stats([x["mb_per_s"] for x in loop_big]), f_mb),
                 "", "", "", ""])
    rows.append(["loopback, 1 KiB writes",
                 fmt_3(stats([x["msgs_per_s"] for x in loop_1k]), f_rate),
                 fmt_3(stats([x["mb_per_s"] for x in loop_1k]), f_mb),
                 "", "", "", ""])
    rows.append(["page cache: write to a new file", "",
                 fmt_3(stats([x[0] for x in pc]), f_mb), "", "", "", ""])
    rows.append(["page cache: rewrite the same pages", "",
                 fmt_3(stats([x[1] for x in pc]), f_mb), "", "", "", ""])
    rl = stats(ratios(field(out["skald"], "mb_per_s"),
                      [x["mb_per_s"] for x in loop_big]))
    rm = stats(ratios(field(out["skald"], "mb_per_s"),
                      field(out["mock"], "mb_per_s")))
    rows.append(["skald ÷ loopback 64 KiB", fmt_3(rl, f_ratio), "", "", "",
                 "", ""])
    rows.append(["skald ÷ mock", fmt_3(rm, f_ratio), "", "", "", "", ""])
    res.target("1 KiB records: MB/s against the loopback limit (report)",
               "%s of loopback (skald ÷ mock %s)"
               % (fmt_3(rl, f_ratio), fmt_3(rm, f_ratio)), "report only",
               None)
    res.section("1 KiB records against the loopback limit",
                "%d records of 1 KiB, %d producers, acks=1, %d partitions. "
                "The loopback pump writes over one TCP connection on "
                "127.0.0.1 to a reader thread (64 KiB writes: the limit; "
                "1 KiB writes: per-write cost). The page-cache rows write "
                "%d MiB in 1 MiB writes to a new file in the data disk's "
                "file system, then over the same pages again: on a virtual "
                "machine whose freed memory is handed back to the host, "
                "the first touch of a page is far slower, and every byte a "
                "broker appends lands on a new page."
                % (p.n_1k, p.producers, p.partitions,
                   256 if not p.quick else 64), TP_HEADER, rows)


def pagecache_write(env, mb):
    """MB/s of writing mb MiB to a new file (fresh page-cache pages), then
    of rewriting the same pages: what a broker's appends cost in the page
    cache on this machine, without the broker."""
    path = os.path.join(env.work, "pagecache.tmp")
    buf = b"\xa5" * (1 << 20)
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        t0 = time.monotonic()
        for _ in range(mb):
            os.write(fd, buf)
        fresh = mb * 1.048576 / (time.monotonic() - t0)
        os.lseek(fd, 0, os.SEEK_SET)
        t0 = time.monotonic()
        for _ in range(mb):
            os.write(fd, buf)
        warm = mb * 1.048576 / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return fresh, warm


def metadata_request(corr=1):
    """Metadata v1 for all topics (null array), header v1."""
    cid = b"skald-bench"
    body = struct.pack(">hhih", 3, 1, corr, len(cid)) + cid
    body += struct.pack(">i", -1)
    return struct.pack(">i", len(body)) + body


def api_versions_request(corr=1):
    cid = b"skald-bench"
    body = struct.pack(">hhih", 18, 0, corr, len(cid)) + cid
    return struct.pack(">i", len(body)) + body


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_frame(s):
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, n)


def time_to_metadata(sk, timeout=120):
    """Spawn-to-first-Metadata-answer of a started skald, in seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", sk.port), 1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    s.sendall(metadata_request())
    resp = recv_frame(s)
    t = time.monotonic() - sk.t_spawn
    s.close()
    return t, len(resp)


def sec_scale_partitions(env, res):
    p = env.p
    SECTION[0] = "scale: partitions"
    n = p.scale_partitions
    say("scale: %d partitions" % n)
    sk = Skald(env)
    rows = []
    try:
        t0 = time.monotonic()
        sk.start([("scale", n)])
        create_s = time.monotonic() - t0
        rss_created = proc_status_kb(sk.pid, "VmRSS")
        fds = len(os.listdir("/proc/%d/fd" % sk.pid))
        stops = []
        t0 = time.monotonic()
        sk.stop(keep_dir=True, timeout=300)
        stops.append(time.monotonic() - t0)
        starts, rss, sizes = [], [], []
        for r in range(p.start_repeats):
            # wait_port in start() returns on the first accept; the
            # figure is spawn to the first Metadata answered in full.
            sk.start(keep_dir=True)
            t, size = time_to_metadata(sk)
            time.sleep(0.2)
            starts.append(t)
            sizes.append(size)
            rss.append(proc_status_kb(sk.pid, "VmRSS"))
            t0 = time.monotonic()
            sk.stop(keep_dir=True, timeout=300)
            stops.append(time.monotonic() - t0)
    except Exception as e:
        res.errors.append("scale partitions: %s" % e)
        say("  %s" % e)
        res.target("%d partitions: start < 2 s" % n, "error", "< 2 s", None)
        res.target("%d partitions: RSS < 200 MB" % n, "error", "< 200 MB",
                   None)
        return
    finally:
        sk.stop()
    st = stats(starts)
    rs = stats(rss)
    rows.append(["create the topic (CreateTopics, %d partitions)" % n,
                 "%.2f s" % create_s])
    rows.append(["RSS after creating", "%.1f MB" % (rss_created / 1024)])
    rows.append(["file descriptors open after creating", "%d" % fds])
    rows.append(["start: spawn to first Metadata answered (%d starts)"
                 % len(starts), fmt_3(st, lambda v: "%.3f s" % v)])
    rows.append(["each start, in order", ", ".join("%.2f s" % v
                                                  for v in starts)])
    rows.append(["each clean stop (SIGTERM to exit), in order",
                 ", ".join("%.2f s" % v for v in stops)])
    rows.append(["RSS after start and one Metadata",
                 fmt_3(rs, lambda v: "%.1f MB" % (v / 1024))])
    rows.append(["Metadata response size", "%d B" % sizes[0]])
    judged = not p.quick
    res.target("%d partitions: start < 2 s" % n, fmt_3(st, f_s) + " s",
               "< 2 s", st[1] < 2, judged)
    res.target("%d partitions: RSS < 200 MB" % n,
               fmt_3(rs, f_kb_mb) + " MB", "< 200 MB",
               rs[1] < 200 * 1024, judged)
    res.section("Scale: %d partitions" % n,
                "One topic of %d partitions created through the admin API on "
                "a fresh broker, which is then stopped and started again on "
                "the same data directory." % n, ["", ""], rows)


def sec_scale_connections(env, res):
    p = env.p
    SECTION[0] = "scale: connections"
    n = p.scale_connections
    say("scale: %d idle connections" % n)
    sk = Skald(env, sets=["max.connections=%d" % (n + 1000)])
    socks = []
    try:
        sk.start()
        s = socket.create_connection(("127.0.0.1", sk.port))
        s.sendall(api_versions_request())
        recv_frame(s)
        s.close()
        time.sleep(0.3)
        base = proc_status_kb(sk.pid, "VmRSS")
        t0 = time.monotonic()
        pending = []
        for i in range(n):
            c = socket.create_connection(("127.0.0.1", sk.port), 10)
            c.sendall(api_versions_request(i))
            socks.append(c)
            pending.append(c)
            if len(pending) >= 200:
                for c2 in pending:
                    recv_frame(c2)
                pending = []
        for c2 in pending:
            recv_frame(c2)
        connect_s = time.monotonic() - t0
        time.sleep(0.5)
        after = proc_status_kb(sk.pid, "VmRSS")
        hwm = proc_status_kb(sk.pid, "VmHWM")
        fds = len(os.listdir("/proc/%d/fd" % sk.pid))
    except Exception as e:
        res.errors.append("scale connections: %s" % e)
        say("  %s" % e)
        res.target("%d idle connections: < 10 KB RSS each" % n,
                   "error after %d connections: %s" % (len(socks), e),
                   "< 10 KB", False, not p.quick)
        return
    finally:
        for c in socks:
            c.close()
        sk.stop()
    per = (after - base) / n
    rows = [["RSS before", "%.1f MB" % (base / 1024)],
            ["RSS with %d connections open" % n, "%.1f MB" % (after / 1024)],
            ["RSS per connection", "%.2f KB" % per],
            ["peak RSS", "%.1f MB" % (hwm / 1024)],
            ["broker file descriptors open", "%d" % fds],
            ["time to open and handshake them all", "%.2f s" % connect_s]]
    res.target("%d idle connections: < 10 KB RSS each" % n, "%.2f KB" % per,
               "< 10 KB", per < 10, not p.quick)
    res.section("Scale: %d idle connections" % n,
                "Each connection sends ApiVersions v0, reads the answer and "
                "stays open; RSS of the broker before and after (kernel "
                "socket buffers are not in RSS). The script raises its "
                "RLIMIT_NOFILE to the hard limit first.", ["", ""], rows)


# ------------------------------------------------------------ profile


def profile(env, res, size, n_records):
    """perf record -g on skald under a produce load, top self costs."""
    p = env.p
    SECTION[0] = "profile, %d B records" % size
    if not shutil.which("perf"):
        res.errors.append("profile: perf not installed (apt-get install "
                          "linux-perf)")
        return None
    say("profiling skald under produce acks=1, %d B records" % size)
    out = {"size": size, "n": n_records}
    sk = Skald(env)
    data = os.path.join(env.work, "perf.data")
    try:
        sk.start([("prof", p.partitions)])
        cmd = ["perf", "record", "-g", "-F", "2999", "-o", data, "-p",
               str(sk.pid)]
        log_cmd(cmd)
        perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = env.bench(sk, ["-m", "produce", "-t", "prof", "-n",
                           str(n_records), "-s", str(size), "-k",
                           str(p.producers), "-a", "1"])
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
        out["run"] = r
        for key, sort in (("symbols", "symbol"), ("dso", "dso")):
            cmd = ["perf", "report", "-i", data, "--stdio", "--no-children",
                   "--sort", sort, "-g", "none", "--percent-limit", "0.7"]
            log_cmd(cmd)
            rep = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=300)
            rows = []
            for line in rep.stdout.splitlines():
                m = re.match(r"^\s+([\d.]+)%\s+(.*\S)\s*$", line)
                if m:
                    name = re.sub(r"(\s+-)+$", "", m.group(2))
                    rows.append((float(m.group(1)), name))
            out[key] = rows[:25]
        # Kernel time by entry point, inclusive: which syscalls (and page
        # faults) the broker's kernel time is spent under.
        cmd = ["perf", "report", "-i", data, "--stdio", "--children",
               "--sort", "symbol", "-g", "none"]
        log_cmd(cmd)
        rep = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=300)
        entries = []
        for line in rep.stdout.splitlines():
            m = re.match(r"^\s+([\d.]+)%\s+([\d.]+)%\s+\[k\] "
                         r"(__x64_sys_\w+|ksys_\w+|asm_exc_page_fault)\b",
                         line)
            if m and float(m.group(1)) >= 0.5:
                entries.append((float(m.group(1)),
                                re.sub(r"^(__x64_sys_|ksys_)", "",
                                       m.group(3))))
        out["entries"] = entries[:12]
        # syscalls per record: strace -c on a second, smaller run
        if shutil.which("strace"):
            n = n_records // 5
            cmd = ["strace", "-c", "-f", "-o",
                   os.path.join(env.work, "strace.txt"), "-p", str(sk.pid)]
            log_cmd(cmd)
            st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            env.bench(sk, ["-m", "produce", "-t", "prof", "-n", str(n),
                           "-s", str(size), "-k", str(p.producers), "-a",
                           "1"])
            st.send_signal(signal.SIGINT)
            st.wait(60)
            calls = []
            with open(os.path.join(env.work, "strace.txt")) as f:
                for line in f:
                    c = line.split()
                    if len(c) >= 5 and c[0][0].isdigit() and \
                            c[-1] != "total":
                        try:
                            calls.append((int(c[3]), c[-1]))
                        except ValueError:
                            pass
            calls.sort(reverse=True)
            out["syscalls"] = (n, calls[:10])
    except Exception as e:
        res.errors.append("profile: %s" % e)
        say("  profile: %s" % e)
    finally:
        sk.stop()
    return out


# ------------------------------------------------------------ report


def machine_facts():
    facts = {}
    facts["cores"] = os.cpu_count()
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts["cpu"] = model
    facts["kernel"] = platform.release()
    try:
        with open("/proc/meminfo") as f:
            facts["mem"] = "%.1f GiB" % (int(f.readline().split()[1]) /
                                         1024 / 1024)
    except OSError:
        facts["mem"] = "?"
    try:
        fs = subprocess.run(["df", "-T", tempfile.gettempdir()],
                            capture_output=True, text=True).stdout
        cols = fs.splitlines()[1].split()
        facts["disk"] = "%s on %s (%s)" % (tempfile.gettempdir(), cols[0],
                                           cols[1])
    except Exception:
        facts["disk"] = "?"
    facts["page_reporting"] = "no"
    try:
        for d in os.listdir("/sys/bus/virtio/drivers/virtio_balloon"):
            fp = os.path.join("/sys/bus/virtio/drivers/virtio_balloon", d,
                              "features")
            if os.path.exists(fp):
                with open(fp) as f:
                    bits = f.read().strip()
                # VIRTIO_BALLOON_F_REPORTING is feature bit 5.
                if len(bits) > 5 and bits[5] == "1":
                    facts["page_reporting"] = "yes"
    except OSError:
        pass
    facts["librdkafka"] = subprocess.run(
        ["pkg-config", "--modversion", "rdkafka"], capture_output=True,
        text=True).stdout.strip()
    if shutil.which("redis-server"):
        v = subprocess.run(["redis-server", "--version"], capture_output=True,
                           text=True).stdout
        m = re.search(r"v=(\S+)", v)
        facts["redis"] = m.group(1) if m else "?"
    return facts


def load_snapshot():
    """Load average and the busiest other processes: the noise."""
    with open("/proc/loadavg") as f:
        la = " ".join(f.read().split()[:3])
    ps = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"],
                        capture_output=True, text=True).stdout.splitlines()
    busy = []
    for line in ps[1:8]:
        c = line.split(None, 1)
        if len(c) == 2 and float(c[0]) >= 5 and c[1] not in ("ps",):
            busy.append("%s %s%%" % (c[1], c[0]))
    return la, busy


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short",
                              "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                                "--untracked-files=no", "core"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" with uncommitted changes in core/" if dirty else "")
    except Exception:
        return "?"


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        r = list(r) + [""] * (len(header) - len(r))
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def write_report(path, env, res, facts, loads, prof, started, elapsed):
    p = env.p
    L = []
    L.append("# Skald benchmark results")
    L.append("")
    L.append("Written by `make bench` (bench/run.py)%s on %s UTC, in %.0f s, "
             "at commit %s. Regenerate with `make bench`; `BENCH_QUICK=1 "
             "make bench` is a short smoke run that writes "
             "build/RESULTS-quick.md instead."
             % (" in QUICK mode" if p.quick else "",
                started.strftime("%Y-%m-%d %H:%M"), elapsed, git_rev()))
    L.append("")
    L.append("Each comparison is measured side by side in this run: every "
             "repeat starts each system afresh on loopback, the order "
             "alternating between repeats, and ratios are taken within a "
             "repeat. Figures are **min / median / max** over %d repeats; "
             "verdicts use the median. Client and broker share the machine."
             % p.repeats)
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append("- cores: %s; CPU: %s; memory: %s" % (facts["cores"],
                                                   facts["cpu"],
                                                   facts["mem"]))
    L.append("- kernel: Linux %s" % facts["kernel"])
    L.append("- data directories: %s" % facts["disk"])
    L.append("- virtio-balloon free page reporting (freed memory returns to "
             "the host, so fresh pages are slow to touch): %s"
             % facts["page_reporting"])
    L.append("- librdkafka %s (client and mock); redis %s"
             % (facts["librdkafka"], facts.get("redis", "not installed")))
    for when, (la, busy) in loads:
        L.append("- load average %s: %s; other busy processes: %s"
                 % (when, la, ", ".join(busy) if busy else "none"))
    L.append("")
    L.append("## Targets")
    L.append("")
    if p.quick:
        L.append("QUICK mode: scaled down, one repeat; verdicts are in "
                 "parentheses and not authoritative.")
        L.append("")
    L.append(md_table(["target", "measured (min / median / max)",
                       "required", "verdict"],
                      [[t["target"], t["measured"], t["required"],
                        t["verdict"]] for t in res.targets]))
    L.append("")
    res.errors.extend(res_errors)
    if res.errors:
        L.append("Errors during the run:")
        L.append("")
        for e in res.errors:
            L.append("- " + e)
        L.append("")
    L.append("## Figures")
    L.append("")
    for title, intro, header, rows, note in res.sections:
        L.append("### " + title)
        L.append("")
        L.append(intro)
        L.append("")
        L.append(md_table(header, rows))
        L.append("")
        if note:
            L.append(note)
            L.append("")
    L.append("## Where the time goes")
    L.append("")
    for pr in prof or []:
        if not pr or not pr.get("symbols"):
            L.append("A profile failed; see the errors above.")
            L.append("")
            continue
        r = pr["run"]
        L.append("### Produce, acks=1, %d records of %d B" % (pr["n"],
                                                            pr["size"]))
        L.append("")
        L.append("`perf record -g` on skald during the run (%d producers): "
                 "%s msgs/s, %.1f MB/s, broker CPU %.2f s over %.2f s. Self "
                 "cost by symbol (≥ 0.7%% of the broker's samples):"
                 % (p.producers, fmt_rate(r["msgs_per_s"]), r["mb_per_s"],
                    r["broker"]["cpu_s"], r["wall_s"]))
        L.append("")
        L.append(md_table(["%", "symbol"],
                          [["%.2f" % a, "`%s`" % b.replace("|", "\\|")]
                           for a, b in pr["symbols"]]))
        L.append("")
        if pr.get("entries"):
            L.append("Inclusive, by kernel entry point (a syscall with "
                     "everything under it, or a page fault): " + ", ".join(
                         "%s %.1f%%" % (b, a) for a, b in pr["entries"])
                     + ".")
            L.append("")
        if pr.get("dso"):
            L.append("By object: " + ", ".join(
                "%s %.1f%%" % (b, a) for a, b in pr["dso"][:6]) + ".")
            L.append("")
        if pr.get("syscalls"):
            n, calls = pr["syscalls"]
            L.append("System calls of the broker (`strace -c -f`) during a "
                     "produce of %d records (slowed by strace; counts, not "
                     "time, matter): " % n + ", ".join(
                         "%s %d (%.2f per 1000 records)"
                         % (name, c, c * 1000.0 / n) for c, name in calls)
                     + ".")
            L.append("")
    if not prof:
        L.append("Not profiled (BENCH_PROFILE=0, or a quick run with every "
                 "target met).")
        L.append("")
    notes = os.path.join(REPO, "bench", "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            L.append(f.read().strip())
        L.append("")
    # Benchmarks run by their own scripts keep their figures in
    # bench/RESULTS-<topic>.md; the report carries them too.
    for extra in sorted(glob.glob(os.path.join(REPO, "bench",
                                               "RESULTS-*.md"))):
        with open(extra) as f:
            L.append(f.read().strip())
        L.append("")
    L.append("## Exact commands")
    L.append("")
    L.append("Each distinct command of the run, in order, from the "
             "repository's top directory; $WORK is the run's temporary "
             "directory under TMPDIR, $PORT a free loopback port and $PID "
             "the broker's process id (skald, skald-mock or redis-server).")
    L.append("")
    cur = None
    for sec, cmd in LOG:
        if sec != cur:
            L.append("")
            L.append("%s:" % (sec or "setup"))
            L.append("")
            cur = sec
        L.append("    " + cmd)
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def ensure_tools():
    """The peers and profilers, from Debian, as scripts/deps.sh does."""
    want = {"redis-server": "redis-server", "redis-benchmark": "redis-tools",
            "perf": "linux-perf", "strace": "strace"}
    missing = sorted({pkg for cmd, pkg in want.items()
                      if not shutil.which(cmd)})
    if not missing:
        return
    if os.geteuid() != 0:
        say("missing Debian packages: %s; install them with: sudo apt-get "
            "install %s (their figures are skipped)"
            % (" ".join(missing), " ".join(missing)))
        return
    say("installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (65536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            return want
        except (ValueError, OSError):
            continue
    return soft


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench",
                                                  "RESULTS.md"))
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK") == "1")
    ap.add_argument("--only", help="comma-separated sections to run")
    a = ap.parse_args()
    params = Params(a.quick)
    build = os.path.abspath(a.build)
    env = Env(build, params)
    for b in (env.skald, env.mock, env.bench_bin):
        if not os.access(b, os.X_OK):
            sys.exit("bench: %s missing; run make bench" % b)
    ensure_tools()
    nofile = raise_nofile()
    if nofile < params.scale_connections + 100:
        params.scale_connections = max(100, nofile - 200)
        say("RLIMIT_NOFILE is %d: testing %d connections"
            % (nofile, params.scale_connections))
    started = datetime.datetime.utcnow()
    t0 = time.monotonic()
    facts = machine_facts()
    loads = [("at the start", load_snapshot())]
    res = Results()
    only = set(a.only.split(",")) if a.only else None
    steps = [("produce1", lambda: sec_produce(env, res, "1")),
             ("produceall", lambda: sec_produce(env, res, "all")),
             ("consume", lambda: sec_consume(env, res)),
             ("latency", lambda: sec_latency(env, res)),
             ("1k", lambda: sec_1k(env, res)),
             ("e2e", lambda: sec_e2e(env, res)),
             ("partitions", lambda: sec_scale_partitions(env, res)),
             ("connections", lambda: sec_scale_connections(env, res))]
    try:
        for name, fn in steps:
            if only and name not in only:
                continue
            try:
                fn()
            except Exception as e:
                res.errors.append("%s: %s" % (name, e))
                say("%s failed: %s" % (name, e))
        loads.append(("at the end", load_snapshot()))
        prof = []
        missed = any(t["verdict"] in ("MISS", "(MISS)") for t in res.targets)
        want = os.environ.get("BENCH_PROFILE", "")
        if want == "1" or (only and "profile" in only) or (
                want != "0" and not only and (missed or not params.quick)):
            prof.append(profile(env, res, 100, params.n_prof))
            prof.append(profile(env, res, 1024, params.n_prof_1k))
        write_report(a.out, env, res, facts, loads, prof, started,
                     time.monotonic() - t0)
    finally:
        shutil.rmtree(env.work, ignore_errors=True)
    say("wrote %s" % a.out)
    for t in res.targets:
        say("  %-58s %-8s %s" % (t["target"], t["verdict"], t["measured"]))


if __name__ == "__main__":
    main()
