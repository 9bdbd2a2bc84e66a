#!/usr/bin/python3
# Keeps README.md true: runs the tour (between <!-- tour:begin --> and
# <!-- tour:end -->) against a test broker, with localhost:9092 replaced
# by the broker's address, and checks every documented build/skald command
# line with --check-config.
#
# Inside the tour: each line of a ```sh block is one command; a ```python
# block is a file named by its first line ("# NAME: ..."), written before
# the next command runs; a ```text block is the exact stdout of the
# command just before it.
import os
import re
import shlex
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)


def blocks(text):
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


# ------------------------------------------------------------ the two commands
first = blocks(readme)[0] if blocks(readme) else ("", "")
cmds = [l.split("#")[0].strip() for l in first[1].splitlines()]
is_((first[0], [c for c in cmds if c]), ("sh", ["make run", "make test"]),
    "the README starts with make run and make test")
r = run(["make", "-n", "run"], cwd=REPO, timeout=60)
ok(r.returncode == 0 and b"skald" in r.stdout,
   "make run would start build/skald")

# ------------------------------------------------------------ the tour
m = re.search(r"<!-- tour:begin -->(.*?)<!-- tour:end -->", readme, re.S)
ok(m, "README has a tour section")
tour = m.group(1) if m else ""
steps = []
for lang, body in blocks(tour):
    if lang == "sh":
        steps += [("cmd", l.strip()) for l in body.splitlines()
                  if l.strip() and not l.strip().startswith("#")]
    elif lang == "python":
        name = re.match(r"#\s*([\w.-]+)", body)
        steps.append(("file", name.group(1) if name else "tour.py", body))
    elif lang == "text":
        steps.append(("expect", body))
ok(sum(1 for s in steps if s[0] == "cmd") >= 4, "the tour has commands")

b = Broker()
cwd = tempfile.mkdtemp(dir=b.tmp)
# Checks beyond a zero exit, by a pattern the command line matches.
checks = [
    (r"kcat .* -L$", [r"broker \d+ at %s" % re.escape(b.bootstrap)]),
    (r"-L -t events", [r'topic "events" with 3 partitions']),
    (r"python3 tour\.py", [r"(?m)^user-0 event 0 \[\('source', b'tour'\)\] "
                           r"partition \d offset \d$",
                           r"(?s)(.*\bevent \d\b.*\n){6}"]),
]
last = None
for step in steps:
    if step[0] == "file":
        with open(os.path.join(cwd, step[1]), "w") as f:
            f.write(step[2].replace("localhost:9092", b.bootstrap))
        continue
    if step[0] == "expect":
        if last is not None:
            is_(last.stdout.decode(errors="replace"), step[1],
                "  its output is as the README shows")
        continue
    cmd = step[1].replace("localhost:9092", b.bootstrap)
    last = run(["sh", "-c", cmd], cwd=cwd, timeout=60)
    out = last.stdout.decode(errors="replace")
    if not is_(last.returncode, 0, "tour: %s" % step[1]):
        diag(out[-2000:])
        diag(last.stderr.decode(errors="replace")[-2000:])
    for pat, musts in checks:
        if re.search(pat, step[1]):
            for must in musts:
                if not ok(re.search(must, out), "  output matches %s" % must):
                    diag(out[-2000:])
b.stop()

# ------------------------------------------------------------ build/skald lines
# Every command line in the README that runs build/skald must be valid:
# run it with --check-config (after --help/--version it is run as is).
lines = sorted(set(re.findall(r"^((?:\w+=\S+ )*build/skald\b.*)$", readme,
                              re.M)))
ok(lines, "README shows build/skald command lines (%d)" % len(lines))
for line in lines:
    line = line.split("#")[0].strip()
    argv = shlex.split(line)
    env = {}
    while argv and "=" in argv[0] and not argv[0].startswith("-"):
        k, v = argv.pop(0).split("=", 1)
        env[k] = v
    argv = [SKALD] + [a.replace("/tmp/skald-data",
                                os.path.join(cwd, "data2")) for a in argv[1:]]
    if not any(a in argv for a in ("--help", "--version", "--check-config")):
        argv.append("--check-config")
    r = run(argv, env=env, cwd=REPO, timeout=20)
    if not is_(r.returncode, 0, "valid: %s" % line):
        diag(r.stderr.decode(errors="replace"))
done()
