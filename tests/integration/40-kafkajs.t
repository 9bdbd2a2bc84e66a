#!/usr/bin/python3
# kafkajs 2.2.4 (pinned in tests/js/package-lock.json) against skald:
# tests/js/produce.js runs the admin calls and the producer, and this
# script reads the records back with confluent-kafka to check them.
import base64
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

JS = os.path.join(REPO, "tests", "js")
node = shutil.which("node")
if not node:
    skip_all("node is not installed")
if not os.path.isdir(os.path.join(JS, "node_modules", "kafkajs")):
    ok(False, "tests/js/node_modules/kafkajs is installed")
    diag("run scripts/deps.sh (it runs npm ci in tests/js)")
    done()

b = Broker()
r = run([node, os.path.join(JS, "produce.js"), b.bootstrap], timeout=90,
        cwd=JS, env={"KAFKAJS_NO_PARTITIONER_WARNING": "1"})
if not is_(r.returncode, 0, "node produce.js exits 0"):
    diag(r.stderr.decode(errors="replace")[-4000:])
try:
    out = json.loads(r.stdout.decode())
except ValueError:
    out = {}
    diag("stdout: %r" % r.stdout[:2000])

# ------------------------------------------------------------ admin
is_(out.get("created"), True, "admin.createTopics creates js-topic, js-admin")
is_(out.get("createdAgain"), False, "and reports false for an existing one")
md = out.get("metadata") or [{}]
is_(md[0].get("name"), "js-admin", "fetchTopicMetadata names the topic")
is_([p["partitionId"] for p in md[0].get("partitions", [])], [0, 1, 2],
    "with 3 partitions")
cl = out.get("cluster", {})
is_(cl.get("brokers"), [b.bootstrap], "describeCluster: one broker, "
    "advertised as the listen address")
ok(cl.get("controller") in (cl.get("nodeIds") or []),
   "the controller is that broker")
ok(all(p["leader"] in (cl.get("nodeIds") or []) and p["errorCode"] == 0
       for p in md[0].get("partitions", [])), "partitions led by it")
is_(out.get("afterDelete"), False, "admin.deleteTopics removed js-admin")

# ------------------------------------------------------------ producer
sent = out.get("sent", [])
ok(sent and all(s["errorCode"] == 0 for s in sent),
   "producer.send acks=-1: no errors")
recs = out.get("records", [])
is_(len(recs), 300, "kafkajs sent 300 records")
is_(out.get("offsets"), [{"partition": 0, "low": "0", "high": "150"},
                         {"partition": 1, "low": "0", "high": "150"}],
    "admin.fetchTopicOffsets: 150 per partition")
is_(out.get("batchOffsets"), {"a": "2", "b": "1"},
    "sendBatch to two topics")

dec = base64.b64decode
for part in (0, 1):
    want = [r for r in recs if r["partition"] == part]
    got = consume(b.bootstrap, "js-topic", [part], len(want))
    is_(len(got), len(want), "partition %d: %d records read back" %
        (part, len(want)))
    is_([(m.key(), m.value()) for m in got],
        [(r["key"].encode(), dec(r["value"])) for r in want],
        "partition %d: keys and values equal" % part)
    is_([m.headers() for m in got],
        [[(k, dec(v)) for k, v in r["headers"]] for r in want],
        "partition %d: headers equal" % part)
    is_([m.timestamp()[1] for m in got], [int(r["timestamp"]) for r in want],
        "partition %d: timestamps equal" % part)

gz = out.get("gzip", [])
got = consume(b.bootstrap, "js-gzip", [0], len(gz))
is_([m.value() for m in got], [v.encode() for v in gz],
    "gzip batch (acks=1) read back")
a0 = out.get("acks0", [])
got = consume(b.bootstrap, "js-acks0", [0], len(a0))
is_([m.value() for m in got], [v.encode() for v in a0],
    "acks=0 records read back")

b.stop()
done()
