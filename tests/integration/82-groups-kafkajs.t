#!/usr/bin/python3
# kafkajs 2.2.4 consumer groups (tests/js/group.js): its default
# RoundRobinAssigner, a member leaving, resuming from committed offsets.
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

b = Broker(args=["--set", "group.initial.rebalance.delay.ms=500"])
r = run([node, os.path.join(JS, "group.js"), b.bootstrap], timeout=110,
        cwd=JS, env={"KAFKAJS_NO_PARTITIONER_WARNING": "1"})
if not is_(r.returncode, 0, "node group.js exits 0"):
    diag(r.stderr.decode(errors="replace")[-4000:])
try:
    out = json.loads(r.stdout.decode())
except ValueError:
    out = {}
    diag("stdout: %r" % r.stdout[:2000])

is_(out.get("protocol"), "RoundRobinAssigner",
    "the group runs kafkajs's default assigner")
ok(out.get("split"), "two members: 4 partitions split between them (%s)" %
   out.get("assignments"))
ok(out.get("firstDone"), "400 records consumed")
ok(out.get("takeover"), "after one member left the other owns all 4")
ok(out.get("secondDone"), "100 more consumed by it")
consumed = out.get("consumed", [])
want = ["first-%d" % i for i in range(400)] + \
    ["second-%d" % i for i in range(100)]
is_(sorted(consumed), sorted(want), "each of the 500 exactly once")
ok(out.get("thirdDone"), "a consumer started later gets the new records")
is_(sorted(out.get("late", [])), sorted("third-%d" % i for i in range(50)),
    "and only those: it resumed from the committed offsets")
is_(out.get("state"), "Empty", "describeGroups: Empty once all left")
is_(out.get("committed"), 550, "fetchOffsets: committed offsets sum to 550")

b.stop()
done()
