#!/usr/bin/python3
# The skald command line: --version, --help, --check-config with good and
# bad YAML (FILE:LINE: key: messages), SKALD_<KEY> and --set overrides,
# the topics: section, log formats and levels, signals.
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403
from confluent_kafka import KafkaError, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402

tmp = tempfile.mkdtemp(prefix="skald-cli-")
import atexit  # noqa: E402
import shutil  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)


def skald(*args, env=None, timeout=20):
    return run([SKALD] + list(args), timeout=timeout, env=env, cwd=tmp)


def text(b):
    return b.decode("utf-8", "replace")


def yaml_file(name, body):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(body)
    return path


def partitions_of(bs, topic, create=True):
    """Partition count of topic; with create, produce one record first so a
    missing topic is auto-created."""
    if create:
        p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 10000})
        p.produce(topic, b"x")
        p.flush(15)
    md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10)
    t = md.topics.get(topic)
    return len(t.partitions) if t else None


# ------------------------------------------------------------ --version/--help
r = skald("--version")
is_(r.returncode, 0, "--version exits 0")
ok(r.stdout.strip() and b"skald" in r.stdout.lower(),
   "--version prints the name and version (%r)" % text(r.stdout.strip()))

r = skald("--help")
is_(r.returncode, 0, "--help exits 0")
h = text(r.stdout)
for k in ("--config", "--data-dir", "--listen", "--set", "--check-config",
          "listeners", "advertised.listeners", "log.dir", "node.id",
          "num.partitions", "auto.create.topics.enable",
          "delete.topic.enable", "message.max.bytes",
          "socket.request.max.bytes", "log.segment.bytes",
          "log.retention.ms", "log.format", "log.level", "retention.ms",
          "max.message.bytes", "cleanup.policy"):
    ok(k in h, "--help mentions %s" % k)

r = skald("--no-such-option")
ok(r.returncode != 0, "an unknown option exits non-zero")
ok(b"--no-such-option" in r.stderr, "and names the option")

# ------------------------------------------------------------ --check-config
etc = os.path.join(REPO, "etc", "skald.yaml")
r = skald("--config", etc, "--check-config", "--data-dir",
          os.path.join(tmp, "d0"))
if not is_(r.returncode, 0, "--check-config etc/skald.yaml exits 0"):
    diag(text(r.stderr))

good = yaml_file("good.yaml", """\
# a complete example
listeners: 127.0.0.1:19092
num.partitions: 3
auto.create.topics.enable: true
message.max.bytes: 2000000
log.retention.ms: 86400000
log.format: text
topics:
  orders:
    partitions: 6
    configs:
      retention.ms: 3600000
      cleanup.policy: delete
""")
r = skald("--config", good, "--check-config")
if not is_(r.returncode, 0, "--check-config on a valid file with topics: "
           "exits 0"):
    diag(text(r.stderr))

bad = [
    ("unknown key", "listeners: 127.0.0.1:9092\n\nnum.partitionz: 3\n",
     3, "num.partitionz"),
    ("wrong type (int)", "# c\nnum.partitions: lots\n", 2,
     "num.partitions"),
    ("wrong type (bool)", "auto.create.topics.enable: maybe\n", 1,
     "auto.create.topics.enable"),
    ("out of range (0 partitions)", "log.dir: /tmp/x\nnum.partitions: 0\n",
     2, "num.partitions"),
    ("out of range (negative size)", "message.max.bytes: -5\n", 1,
     "message.max.bytes"),
    ("bad enum", "log.format: xml\n", 1, "log.format"),
    ("bad topic config value",
     "topics:\n  t1:\n    partitions: 2\n    configs:\n"
     "      retention.ms: soon\n", 5, "retention.ms"),
    ("unknown topic config",
     "topics:\n  t1:\n    configs:\n      retention.mss: 5\n", 4,
     "retention.mss"),
    ("bad topic partitions", "topics:\n  t1:\n    partitions: -3\n", 3,
     "partitions"),
]
for name, body, line, key in bad:
    path = yaml_file("bad-%s.yaml" % key, body)
    r = skald("--config", path, "--check-config")
    err = text(r.stderr)
    ok(r.returncode != 0, "%s: exits non-zero" % name)
    # The key may be qualified by its place ("topics.t1.configs.KEY").
    pat = r"%s:%d: ([^\s:]+\.)?%s:" % (re.escape(path), line,
                                      re.escape(key))
    if not ok(re.search(pat, err),
              "%s: stderr says %s:%d: %s:" % (name, os.path.basename(path),
                                              line, key)):
        diag("stderr: " + err.strip())
# The last bad file must also stop a real start.
r = skald("--config", path, "--listen", "127.0.0.1:%d" % free_port(),
          "--data-dir", os.path.join(tmp, "d1"))
ok(r.returncode != 0 and r.returncode != -999,
   "a bad file stops a normal start too")

path = yaml_file("syntax.yaml", "listeners: [unclosed\nnum.partitions: 1\n")
r = skald("--config", path, "--check-config")
ok(r.returncode != 0 and path.encode() in r.stderr,
   "a YAML syntax error exits non-zero naming the file")
path = yaml_file("illegal-topic.yaml", "topics:\n  bad/name:\n"
                 "    partitions: 1\n")
r = skald("--config", path, "--check-config")
ok(r.returncode != 0 and b"bad/name" in r.stderr,
   "an illegal topic name in topics: is refused")
r = skald("--config", os.path.join(tmp, "missing.yaml"), "--check-config")
ok(r.returncode != 0 and b"missing.yaml" in r.stderr,
   "a missing config file exits non-zero naming it")

# ------------------------------------------------------------ overrides
r = skald("--check-config", "--set", "no.such.key=1")
ok(r.returncode != 0 and b"no.such.key" in r.stderr,
   "--set with an unknown key exits non-zero naming it")
r = skald("--check-config", "--set", "num.partitions")
ok(r.returncode != 0, "--set without '=' exits non-zero")
r = skald("--check-config", "--set", "num.partitions=many")
ok(r.returncode != 0 and b"num.partitions" in r.stderr,
   "--set with a bad value exits non-zero naming the key")
r = skald("--check-config", env={"SKALD_NUM_PARTITIONS": "abc"})
ok(r.returncode != 0 and (b"SKALD_NUM_PARTITIONS" in r.stderr or
                          b"num.partitions" in r.stderr),
   "a bad SKALD_NUM_PARTITIONS exits non-zero naming it")

b = Broker(env={"SKALD_NUM_PARTITIONS": "5"})
is_(partitions_of(b.bootstrap, "env-auto"), 5,
    "SKALD_NUM_PARTITIONS=5: an auto-created topic has 5 partitions")
b.stop()

b = Broker(args=["--set", "num.partitions=4"])
is_(partitions_of(b.bootstrap, "set-auto"), 4,
    "--set num.partitions=4: an auto-created topic has 4 partitions")
b.stop()

b = Broker(config="num.partitions: 2\n", env={"SKALD_NUM_PARTITIONS": "7"})
is_(partitions_of(b.bootstrap, "env-over-file"), 7,
    "the environment overrides the file")
b.stop()
b = Broker(config="num.partitions: 2\n", args=["--set", "num.partitions=3"])
is_(partitions_of(b.bootstrap, "set-over-file"), 3,
    "--set overrides the file")
b.stop()
b = Broker(args=["--set", "num.partitions=3"],
           env={"SKALD_NUM_PARTITIONS": "7"})
is_(partitions_of(b.bootstrap, "set-over-env"), 3,
    "--set overrides the environment")
b.stop()
other = os.path.join(tmp, "other-data")
b = Broker(config="listeners: 127.0.0.1:1\nlog.dir: %s\n" % other,
           env={"SKALD_LISTENERS": "127.0.0.1:2", "SKALD_LOG_DIR": other})
ok(b.alive(), "--listen overrides listeners from the file and environment")
ok(os.path.isdir(b.data_dir) and not os.path.exists(other),
   "--data-dir overrides log.dir from the file and environment")
b.stop()

# ------------------------------------------------------------ topics:, flags
b = Broker(config="""\
auto.create.topics.enable: false
delete.topic.enable: false
topics:
  declared:
    partitions: 2
    configs:
      retention.ms: 3600000
  declared-default: {}
""")
is_(partitions_of(b.bootstrap, "declared", create=False), 2,
    "a topic declared in topics: exists at start with 2 partitions")
is_(partitions_of(b.bootstrap, "declared-default", create=False), 1,
    "a declared topic without partitions gets num.partitions (1)")
adm = AdminClient({"bootstrap.servers": b.bootstrap})
c = list(adm.describe_configs([ConfigResource("topic", "declared")])
         .values())[0].result(10)
is_(c["retention.ms"].value, "3600000", "with its configs")
md = adm.list_topics(topic="not-there", timeout=10)
t = md.topics.get("not-there")
is_(t.error.code() if t is not None and t.error else None,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    "auto.create.topics.enable=false: Metadata says UNKNOWN_TOPIC_OR_PART")
is_(partitions_of(b.bootstrap, "not-there", create=False), None,
    "and creates nothing")
try:
    list(adm.delete_topics(["declared"]).values())[0].result(10)
    code = 0
except Exception as e:  # noqa: BLE001
    code = e.args[0].code()
# Kafka answers TOPIC_DELETION_DISABLED from DeleteTopics v3 and
# INVALID_REQUEST below (librdkafka sends v1).
ok(code in (KafkaError.TOPIC_DELETION_DISABLED, KafkaError.INVALID_REQUEST),
   "delete.topic.enable=false: DeleteTopics refused (%s)" % code)
is_(partitions_of(b.bootstrap, "declared", create=False), 2,
    "and the topic is still there")
del adm
b.stop()
b.start()
is_(partitions_of(b.bootstrap, "declared", create=False), 2,
    "a restart with the same topics: section is fine")
b.stop()

port = free_port()
b = Broker(args=["--set", "advertised.listeners=localhost:%d" % port])
md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
is_(sorted((x.host, x.port) for x in md.brokers.values()),
    [("localhost", port)], "advertised.listeners is what Metadata reports")
b.stop()

# ------------------------------------------------------------ logging
b = Broker()
b.stop()
log = b.log()
ok("listening on %s" % b.bootstrap in log,
   "text log says 'listening on %s'" % b.bootstrap)

b = Broker(config="log.format: json\n")
b.stop()
lines = [l for l in b.log().splitlines() if l.strip()]
objs = []
for l in lines:
    try:
        objs.append(json.loads(l))
    except ValueError:
        diag("not JSON: %r" % l)
ok(lines and len(objs) == len(lines) and
   all(isinstance(o, dict) for o in objs),
   "log.format: json: every stderr line is a JSON object (%d lines)" %
   len(lines))
ok(any("listening on %s" % b.bootstrap in json.dumps(o) for o in objs),
   "one of them says listening on %s" % b.bootstrap)

b = Broker(args=["--set", "log.level=error"])
b.stop()
ok("listening on" not in b.log(), "log.level=error hides info lines")

# ------------------------------------------------------------ signals, dirs
b = Broker()
b.signal(signal.SIGINT)
is_(b.wait(15), 0, "SIGINT: exit 0")
b.start()
b.stop(name="SIGTERM: exit 0")

# Without --data-dir the data goes to ./data.
port = free_port()
cwd = tempfile.mkdtemp(dir=tmp)
with open(os.path.join(tmp, "default-dir.log"), "wb") as err:
    proc = subprocess.Popen([SKALD, "--listen", "127.0.0.1:%d" % port],
                            cwd=cwd, stdout=err, stderr=err)
import socket  # noqa: E402


def accepting():
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return proc.poll() is not None
wait_until(accepting, 10)
ok(os.path.isdir(os.path.join(cwd, "data")), "default data directory ./data")
proc.send_signal(signal.SIGTERM)
try:
    rc = proc.wait(15)
except subprocess.TimeoutExpired:
    proc.kill()
    rc = proc.wait()
is_(rc, 0, "and it stops with exit 0")

# A SIGTERM the moment the listener accepts (before the event loop has
# run) stops the broker cleanly, never kills it: the signal handlers are
# installed before any listener opens.
rcs = []
for i in range(20):
    port = free_port()
    d = tempfile.mkdtemp(dir=tmp)
    proc = subprocess.Popen([SKALD, "--listen", "127.0.0.1:%d" % port,
                             "--data-dir", os.path.join(d, "data")],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            time.sleep(0.0005)
    proc.send_signal(signal.SIGTERM)
    try:
        rcs.append(proc.wait(15))
    except subprocess.TimeoutExpired:
        proc.kill()
        rcs.append(proc.wait())
ok(rcs == [0] * 20, "SIGTERM as soon as it accepts: exit 0 every time "
   "(%s)" % sorted(set(rcs)))

afile = yaml_file("not-a-dir", "x")
r = skald("--listen", "127.0.0.1:%d" % free_port(), "--data-dir", afile,
          timeout=10)
ok(r.returncode not in (0, -999) and afile.encode() in r.stderr,
   "a data dir that is a file: exits non-zero naming it")
busy = Broker()
r = skald("--listen", busy.bootstrap, "--data-dir", os.path.join(tmp, "d2"),
          timeout=10)
ok(r.returncode not in (0, -999),
   "a listen address already in use: exits non-zero")
busy.stop()
done()
