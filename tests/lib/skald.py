"""Helpers for Skald's integration tests (run by /usr/bin/python3 via prove).

TAP output:
    from skald import *
    plan(3)                  # or no plan and done() prints it at the end
    ok(cond, "name")
    is_(got, want, "name")   # prints both on failure
    ok(cond, "name", todo="known bug")  # TAP TODO: reported, not fatal
    diag("text")
    done()                   # exits non-zero on a failure or a miscount

A broker on a free loopback port with a temporary data directory:
    b = Broker()             # started and accepting, or the test fails
    b.bootstrap              # "127.0.0.1:PORT"
    b.stop()                 # SIGTERM; ok() that it exited 0, no sanitizer report
    b.kill()                 # SIGKILL
    b.restart()              # same data directory and port
    b.admin_port             # its admin HTTP listener (admin.listener)
    b.metrics()              # GET /metrics: the Prometheus text
    metric(text, "skald_build_info", {"version": "0.1.0"})  # a float or None
Every broker is killed (by its PID) and its directory removed at exit. On a
failure its stderr is printed as TAP diagnostics first. SKALD_KEEP=1 keeps
the directories.

The binary is $SKALD_BUILD/skald (the Makefile sets an absolute path), by
default <repo>/build/skald.

Importing this module sets SKALD_ADMIN_LISTENER=127.0.0.1:0 (see below).
"""

import atexit
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SKALD_BUILD") or os.path.join(REPO, "build")
SKALD = os.path.join(BUILD, "skald")

__all__ = [
    "REPO", "BUILD", "SKALD", "plan", "ok", "is_", "diag", "note", "skip",
    "skip_all", "bail_out", "done", "failed", "Broker", "free_port",
    "wait_until", "run", "kreq", "recv_frame", "api_versions",
    "parse_api_versions_v0", "consume", "produce", "admin_result",
    "crc32c", "zigzag", "record_batch", "produce_request",
    "parse_produce_response", "metric", "parse_metrics",
    "check_copies_stalled", "check_copies_caught_up",
]

# Every skald started from a test, also directly with subprocess rather
# than through Broker, would otherwise open its admin HTTP listener on
# the default 127.0.0.1:9644: two at once (prove -j, or two scripts each
# starting one) and the second fails to start. Port 0 takes any free
# port. Broker gives each of its brokers a port of its own (--set, which
# overrides this).
os.environ["SKALD_ADMIN_LISTENER"] = "127.0.0.1:0"

# ---------------------------------------------------------------- TAP

_n = 0          # tests run
_failed = 0     # tests failed
_planned = None  # plan given up front
_finished = False
_brokers = []   # every Broker made, for cleanup and diagnostics


def _out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def plan(n):
    global _planned
    _planned = n
    _out("1..%d" % n)


def diag(msg):
    for line in str(msg).splitlines() or [""]:
        _out("# " + line)


note = diag


def ok(cond, name="", todo=None):
    """One test. todo="reason" marks a known broker bug: a failure is
    reported but does not fail the script (TAP TODO)."""
    global _n, _failed
    _n += 1
    _out("%sok %d - %s%s" % ("" if cond else "not ", _n, name,
                             " # TODO %s" % todo if todo else ""))
    if not cond and todo:
        return False
    if not cond:
        _failed += 1
        fr = traceback.extract_stack(limit=3)
        # The caller of ok (or of is_/stop, one level further up).
        for f in reversed(fr[:-1]):
            if os.path.basename(f.filename) != "skald.py":
                diag("  failed at %s line %d" %
                     (os.path.basename(f.filename), f.lineno))
                break
    return bool(cond)


def _short(v, limit=300):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "...(%d chars)" % len(r)


def is_(got, want, name="", todo=None):
    if not ok(got == want, name, todo):
        diag("         got: " + _short(got))
        diag("    expected: " + _short(want))
        return False
    return True


def skip(reason, count=1):
    global _n
    for _ in range(count):
        _n += 1
        _out("ok %d # skip %s" % (_n, reason))


def skip_all(reason):
    global _finished
    _finished = True
    _out("1..0 # SKIP %s" % reason)
    _cleanup()
    sys.exit(0)


def bail_out(reason):
    global _finished, _failed
    _finished = True
    _failed += 1
    _out("Bail out! %s" % reason)
    _dump_brokers()
    _cleanup()
    sys.exit(255)


def failed():
    return _failed


def done():
    """Print the plan if none was given, dump logs on failure, exit."""
    global _finished
    _finished = True
    if _planned is None:
        _out("1..%d" % _n)
    elif _planned != _n:
        diag("planned %d tests but ran %d" % (_planned, _n))
    bad = _failed or (_planned is not None and _planned != _n)
    if bad:
        _dump_brokers()
    _cleanup()
    sys.exit(1 if bad else 0)


def _excepthook(etype, value, tb):
    # An uncaught exception is a failed test, with the broker logs shown.
    global _finished
    ok(False, "uncaught exception: %s: %s" % (etype.__name__, value))
    diag("".join(traceback.format_exception(etype, value, tb)))
    _finished = True
    if _planned is None:
        _out("1..%d" % _n)
    _dump_brokers()
    _cleanup()
    sys.stdout.flush()
    os._exit(255)


sys.excepthook = _excepthook


def _atexit():
    if not _finished:
        diag("test script ended without calling done()")
        _dump_brokers()
    _cleanup()


atexit.register(_atexit)


def _on_signal(signum, frame):
    _cleanup()
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def _dump_brokers():
    for b in _brokers:
        b.dump_log()


def _cleanup():
    for b in _brokers:
        b.cleanup()

# ---------------------------------------------------------------- utilities


def free_port():
    """A loopback port nobody listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(pred, timeout=10.0, interval=0.05):
    """Poll pred() until it is true or timeout passes; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def run(argv, timeout=30, env=None, input=None, cwd=None):
    """Run a command; returns CompletedProcess with bytes stdout/stderr.
    A timeout is reported as returncode -999 rather than raised."""
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=e,
                              cwd=cwd)
    except subprocess.TimeoutExpired as ex:
        return subprocess.CompletedProcess(argv, -999, ex.stdout or b"",
                                           (ex.stderr or b"") +
                                           b"\n(timed out)")

# ---------------------------------------------------------------- broker


class BrokerError(Exception):
    pass


class Broker:
    """A skald process on 127.0.0.1:<free port> with a private data dir.

    args: extra command-line arguments (e.g. ["--set", "num.partitions=3"]).
    config: YAML text written to <tmp>/skald.yaml and passed as --config.
    env: extra environment variables (e.g. {"SKALD_NUM_PARTITIONS": "5"}).
    nofile: a soft limit on open files for the broker (the hard one stays).
    data_dir: the data directory, when not <tmp>/data (a mount point, say;
    it is not removed at exit, only the broker's own tmp directory is).
    """

    def __init__(self, args=(), config=None, env=None, start=True,
                 ready_timeout=10.0, nofile=None, data_dir=None):
        self.tmp = tempfile.mkdtemp(prefix="skald-test-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.args = list(args)
        self.env = dict(env or {})
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(self.tmp, "skald.yaml")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.port = free_port()
        self.admin_port = free_port()
        self.host = "127.0.0.1"
        self.proc = None
        self.runs = 0            # how many times started
        self.stderr_paths = []   # one file per run
        self.ready_timeout = ready_timeout
        self.nofile = nofile     # soft RLIMIT_NOFILE for the broker
        self._dumped = False
        _brokers.append(self)
        if start:
            self.start()

    @property
    def bootstrap(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def argv(self):
        a = [SKALD]
        if self.config_path:
            a += ["--config", self.config_path]
        a += ["--listen", self.bootstrap, "--data-dir", self.data_dir,
              "--set", "admin.listener=%s:%d" % (self.host, self.admin_port)]
        # Later --set win: args may override admin.listener.
        return a + self.args

    def start(self):
        if self.alive():
            raise BrokerError("broker already running")
        self.runs += 1
        path = os.path.join(self.tmp, "stderr.%d.log" % self.runs)
        self.stderr_paths.append(path)
        env = dict(os.environ)
        env.update(self.env)
        pre = None
        if self.nofile:
            import resource
            soft = self.nofile

            def pre():
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        with open(path, "wb") as err:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, env=env,
                                         cwd=self.tmp, preexec_fn=pre)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise BrokerError(
                    "skald exited with %s before accepting on %s:\n%s" %
                    (self.proc.returncode, self.bootstrap, self.last_log()))
            try:
                socket.create_connection((self.host, self.port), 0.5).close()
                return self
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise BrokerError(
                    "skald did not accept on %s within %.0fs:\n%s" %
                    (self.bootstrap, self.ready_timeout, self.last_log()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=15.0):
        """Wait for exit; returns the exit code or None on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, check=True, timeout=15.0, name=None):
        """SIGTERM and wait. With check, one TAP test: exit code 0 and no
        sanitizer report on stderr. Returns the exit code."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            diag("skald did not exit %.0fs after SIGTERM; killing" % timeout)
            self.kill()
        if check:
            log = self.last_log()
            san = [l for l in log.splitlines()
                   if "Sanitizer" in l or "runtime error:" in l]
            good = rc == 0 and not san
            if not ok(good, name or "broker exits 0 on SIGTERM"):
                diag("exit code: %r" % rc)
                for l in san[:20]:
                    diag("  " + l)
        return rc

    def kill(self):
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def restart(self, check=True):
        """Stop (SIGTERM, checked) if running, then start on the same data
        directory and port."""
        if self.alive():
            self.stop(check=check)
        self.start()
        return self

    def metrics(self, timeout=10.0):
        """GET /metrics from the admin listener; the body as text. The
        Kafka listener accepts (start() returns) a moment before the
        admin one is up, so a refused connection is retried until
        timeout."""
        import urllib.error
        import urllib.request
        url = "http://%s:%d/metrics" % (self.host, self.admin_port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    return r.read().decode("utf-8")
            except urllib.error.URLError as e:
                if not (isinstance(e.reason, ConnectionRefusedError) and
                        self.alive() and time.monotonic() < deadline):
                    raise
            time.sleep(0.05)

    def last_log(self):
        if not self.stderr_paths:
            return ""
        try:
            with open(self.stderr_paths[-1], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log(self):
        """stderr of every run so far, concatenated."""
        out = []
        for i, p in enumerate(self.stderr_paths, 1):
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(out)

    def dump_log(self, max_lines=200):
        if self._dumped:
            return
        self._dumped = True
        for i, p in enumerate(self.stderr_paths, 1):
            try:
                with open(p, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            diag("---- skald stderr (port %d, run %d, %d lines) ----" %
                 (self.port, i, len(lines)))
            if len(lines) > max_lines:
                diag("  ... %d lines omitted" % (len(lines) - max_lines))
                lines = lines[-max_lines:]
            for l in lines:
                diag("  " + l)

    def cleanup(self):
        self.kill()
        if os.environ.get("SKALD_KEEP"):
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

# ---------------------------------------------------------------- metrics

# One sample line: name, optional {labels}, value (no timestamps: skald
# writes none).
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n"
                  else m.group(1), v)


def _labels(text):
    """{name: value} of a label set, or None if it does not parse."""
    out = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m or m.end() == pos:
            return None
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def parse_metrics(text):
    """Parse Prometheus text format 0.0.4 as skald writes it: a list of
    (name, {labels}, value). Raises ValueError on a line that is neither
    a comment nor a sample."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        labels = _labels(m.group(2) or "") if m else None
        if labels is None:
            raise ValueError("line %d is not a sample: %r" % (n, line))
        try:
            out.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            raise ValueError("line %d: bad value: %r" % (n, line))
    return out


def metric(text, name, labels=None):
    """The value (float) of the series name whose labels include labels
    (a dict; None or {} matches any, the first one), or None if there is
    none."""
    for n, ls, v in parse_metrics(text):
        if n == name and all(ls.get(k) == str(x)
                             for k, x in (labels or {}).items()):
            return v
    return None


def check_copies_stalled(b, what):
    """Two tests: while a tier is down, failed copies are counted and the
    segments waiting show as copy lag."""
    for name in ("skald_remote_copy_failures_total",
                 "skald_remote_copy_lag_segments"):
        ok(wait_until(lambda: (metric(b.metrics(), name) or 0) > 0, 10),
           "%s > 0 while %s is down" % (name, what))


def check_copies_caught_up(b, copied_before):
    """Two tests: once the tier is back, nothing waits and more segments
    were copied than copied_before (skald_remote_segments_copied_total
    read while it was down)."""
    ok(wait_until(lambda: metric(b.metrics(),
                                 "skald_remote_copy_lag_segments") == 0, 10),
       "skald_remote_copy_lag_segments is back to 0")
    after = metric(b.metrics(), "skald_remote_segments_copied_total")
    ok(copied_before is not None and after is not None and
       after > copied_before,
       "skald_remote_segments_copied_total grew (%r -> %r)" %
       (copied_before, after))

# ---------------------------------------------------------------- raw wire


def kreq(api_key, version, corr, body=b"", client_id=b"skald-test",
         flexible=False):
    """A framed request: size, header v1 (v2 if flexible), body."""
    if client_id is None:
        cid = struct.pack(">h", -1)
    else:
        cid = struct.pack(">h", len(client_id)) + client_id
    hdr = struct.pack(">hhi", api_key, version, corr) + cid
    if flexible:
        hdr += b"\x00"  # no tagged fields
    msg = hdr + body
    return struct.pack(">i", len(msg)) + msg


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            # A close with unread input reaches us as a reset.
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_frame(sock, timeout=5.0):
    """One response frame (without the size). None if the peer closed.
    Raises socket.timeout if nothing complete arrives in time."""
    sock.settimeout(timeout)
    hdr = _recv_exact(sock, 4)
    if hdr is None:
        return None
    (n,) = struct.unpack(">i", hdr)
    if n < 0 or n > 200 * 1024 * 1024:
        raise ValueError("bad response size %d" % n)
    return _recv_exact(sock, n)


def parse_api_versions_v0(frame):
    """(correlation_id, error_code, {key: (min, max)}) from a response with
    header v0 and a v0/v1/v2 body (v1+ adds throttle_time_ms after it)."""
    corr, err, n = struct.unpack_from(">ihi", frame, 0)
    off = 10
    keys = {}
    for _ in range(max(n, 0)):
        k, lo, hi = struct.unpack_from(">hhh", frame, off)
        off += 6
        keys[k] = (lo, hi)
    return corr, err, keys


def _uvarint(buf, off):
    shift = result = 0
    while True:
        b = buf[off]
        off += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, off
        shift += 7


def parse_api_versions_v3(frame):
    """(corr, error, {key: (min, max)}, throttle) for a v3+ (flexible body,
    header v0) ApiVersions response."""
    corr, err = struct.unpack_from(">ih", frame, 0)
    off = 6
    n, off = _uvarint(frame, off)
    keys = {}
    for _ in range(max(n - 1, 0)):
        k, lo, hi = struct.unpack_from(">hhh", frame, off)
        off += 6
        ntags, off = _uvarint(frame, off)
        for _ in range(ntags):
            _, off = _uvarint(frame, off)
            size, off = _uvarint(frame, off)
            off += size
        keys[k] = (lo, hi)
    (throttle,) = struct.unpack_from(">i", frame, off)
    return corr, err, keys, throttle


def api_versions(host, port, corr=1, timeout=5.0):
    """Open a connection, send ApiVersions v0, return the parsed answer."""
    with socket.create_connection((host, port), timeout) as s:
        s.sendall(kreq(18, 0, corr))
        return parse_api_versions_v0(recv_frame(s, timeout))

# ---------------------------------------------------------------- records

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def zigzag(n):
    """A signed zigzag varint, as used inside records."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def record_batch(values, keys=None, base_ts=1700000000000, attributes=0,
                 last_offset_delta=None, count=None, magic=2, crc=None,
                 records_blob=None, producer_id=-1, base_sequence=-1,
                 producer_epoch=-1):
    """A RecordBatch v2 as a producer sends it (base offset 0). The keyword
    arguments override fields to build invalid batches; crc=None computes
    the right CRC-32C."""
    if records_blob is None:
        recs = b""
        for i, v in enumerate(values):
            k = keys[i] if keys else None
            body = (b"\x00" + zigzag(0) + zigzag(i) +
                    (zigzag(-1) if k is None else zigzag(len(k)) + k) +
                    (zigzag(-1) if v is None else zigzag(len(v)) + v) +
                    zigzag(0))
            recs += zigzag(len(body)) + body
        records_blob = recs
    n = len(values) if count is None else count
    lod = len(values) - 1 if last_offset_delta is None else last_offset_delta
    after_crc = (struct.pack(">hiqqqhii", attributes, lod, base_ts, base_ts,
                             producer_id, producer_epoch, base_sequence,
                             n) +
                 records_blob)
    c = crc32c(after_crc) if crc is None else crc
    after_len = struct.pack(">ibI", -1, magic, c) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def produce_request(topic, partition, records, acks=-1, version=3,
                    timeout_ms=10000):
    """The body of a Produce request (v3+) for one topic-partition."""
    t = topic.encode()
    return (struct.pack(">hhi", -1, acks, timeout_ms) +
            struct.pack(">ih", 1, len(t)) + t +
            struct.pack(">ii", 1, partition) +
            struct.pack(">i", len(records)) + records)


def parse_produce_response(frame, version=3):
    """[(topic, partition, error, base_offset)] from a Produce response
    (header v0, body v3..v7)."""
    off = 4  # correlation id
    (nt,) = struct.unpack_from(">i", frame, off)
    off += 4
    out = []
    for _ in range(nt):
        (ln,) = struct.unpack_from(">h", frame, off)
        off += 2
        name = frame[off:off + ln].decode()
        off += ln
        (np_,) = struct.unpack_from(">i", frame, off)
        off += 4
        for _ in range(np_):
            p, err, base, _lat = struct.unpack_from(">ihqq", frame, off)
            off += 22
            if version >= 5:
                off += 8  # log_start_offset
            out.append((name, p, err, base))
    return out

# ---------------------------------------------------------------- clients


def produce(bootstrap, topic, records, conf=None, timeout=30.0):
    """Produce with confluent_kafka. records: iterable of dicts with keys
    value, key, partition, timestamp, headers (all optional but value).
    Returns a list of (err, partition, offset) in delivery order per record
    index."""
    from confluent_kafka import Producer
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5,
         "message.timeout.ms": int(timeout * 1000)}
    c.update(conf or {})
    p = Producer(c)
    results = []

    def make_cb(i):
        def cb(err, msg):
            results[i] = (err, msg.partition() if err is None else None,
                          msg.offset() if err is None else None)
        return cb
    for i, r in enumerate(records):
        results.append(None)
        kw = {k: r[k] for k in ("key", "partition", "timestamp", "headers")
              if k in r and r[k] is not None}
        while True:
            try:
                p.produce(topic, r.get("value"), on_delivery=make_cb(i), **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(timeout)
    if left:
        diag("produce: %d records still queued after %.0fs" % (left, timeout))
    return results


def consume(bootstrap, topic, partitions, count=None, timeout=30.0,
            conf=None, offsets=None):
    """Read count records from the given partitions starting at the
    beginning (or at offsets[p]) with confluent_kafka and assign(): no
    group coordination, no commits. count=None reads until every partition
    reports its end. Returns a list of Message objects (errors other than
    partition EOF are raised)."""
    from confluent_kafka import (Consumer, KafkaError, KafkaException,
                                 TopicPartition, OFFSET_BEGINNING)
    c = {"bootstrap.servers": bootstrap, "group.id": "skald-test",
         "enable.auto.commit": False, "enable.auto.offset.store": False,
         "enable.partition.eof": count is None,
         "fetch.wait.max.ms": 100}  # end of partition seen quickly
    c.update(conf or {})
    cons = Consumer(c)
    try:
        tps = [TopicPartition(topic, p,
                              (offsets or {}).get(p, OFFSET_BEGINNING))
               for p in partitions]
        cons.assign(tps)
        got = []
        eof = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if count is not None and len(got) >= count:
                break
            if count is None and eof >= set(partitions):
                break
            m = cons.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise KafkaException(m.error())
            eof.discard(m.partition())
            got.append(m)
        else:
            diag("consume %s: timed out after %.0fs with %d records" %
                 (topic, timeout, len(got)))
        return got
    finally:
        cons.close()


def admin_result(futures, timeout=15.0):
    """Wait for an AdminClient futures dict: {name: None or exception}."""
    out = {}
    for k, f in futures.items():
        try:
            out[k] = f.result(timeout)
        except Exception as e:  # KafkaException carrying a KafkaError
            out[k] = e
    return out
