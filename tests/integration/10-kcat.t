#!/usr/bin/python3
# kcat against skald: 10,000 keyed records with binary-safe values of
# varied sizes, produced with -P -K and consumed back byte-exact with -C -e;
# whole files as single binary messages; kcat -L metadata.
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

N = 10000
KSEP = b"|KEY|"   # multi-byte delimiters; records never contain b"|"
RSEP = b"|REC|"


def parse_kcat(out):
    """Parse output of -f '%p %o %K %S\\n%k%s\\n' (binary-safe by lengths)."""
    recs = []
    i = 0
    while i < len(out):
        nl = out.index(b"\n", i)
        p, o, klen, vlen = (int(x) for x in out[i:nl].split())
        i = nl + 1
        key = out[i:i + klen] if klen >= 0 else None
        i += max(klen, 0)
        val = out[i:i + vlen] if vlen >= 0 else None
        i += max(vlen, 0)
        if out[i:i + 1] != b"\n":
            raise ValueError("bad kcat output framing at byte %d" % i)
        i += 1
        recs.append((p, o, key, val))
    return recs


FMT = r"%p %o %K %S\n%k%s\n"
rng = random.Random(20240601)
alphabet = bytes(b for b in range(256) if b != ord("|"))


def value(i):
    if i % 1000 == 999:
        n = rng.randrange(50000, 120000)   # a few large ones
    elif i % 97 == 0:
        n = 0                              # empty values
    elif i % 10 == 0:
        n = rng.randrange(1000, 8000)
    else:
        n = rng.randrange(1, 200)
    return bytes(rng.choice(alphabet) for _ in range(n)) if n < 300 else \
        bytes(alphabet[b % len(alphabet)] for b in rng.randbytes(n))


records = []
for i in range(N):
    key = b"key-%05d-" % i + bytes(rng.choice(alphabet)
                                   for _ in range(rng.randrange(0, 6)))
    records.append((key, value(i)))

b = Broker(args=["--set", "num.partitions=3"])
kc = ["kcat", "-b", b.bootstrap, "-X", "socket.timeout.ms=10000"]

# ---- produce 10,000 keyed records
inp = RSEP.join(k + KSEP + v for k, v in records)
path = os.path.join(b.tmp, "input.bin")
with open(path, "wb") as f:
    f.write(inp)
with open(path, "rb") as f:   # stdin: -K/-D split it; file args would not
    r = run(kc + ["-P", "-t", "kcat-keyed", "-K", KSEP, "-D", RSEP],
            input=f.read(), timeout=60)
if not is_(r.returncode, 0, "kcat -P -K of %d records exits 0" % N):
    diag(r.stderr.decode(errors="replace"))

# ---- consume them back
r = run(kc + ["-C", "-t", "kcat-keyed", "-o", "beginning", "-e", "-q",
              "-f", FMT], timeout=60)
is_(r.returncode, 0, "kcat -C -e exits 0")
got = parse_kcat(r.stdout)
is_(len(got), N, "consumed %d records" % N)
want = dict(records)
by_key = {k: v for _, _, k, v in got}
bad = [k for k, v in want.items() if by_key.get(k) != v]
is_(len(bad), 0, "every key came back with its value byte-exact")
if bad:
    diag("first mismatching key: %r" % bad[0])
is_(sorted(by_key), sorted(want), "no unexpected keys")
is_(sum(1 for _, _, _, v in got if v == b""), sum(1 for _, v in records if v == b""),
    "empty values stay empty (not null)")

# Per partition: offsets 0..n-1 and the producer's order kept.
parts = {}
for p, o, k, v in got:
    parts.setdefault(p, []).append((o, k))
is_(sorted(parts), [0, 1, 2], "records spread over the 3 partitions")
index = {k: i for i, (k, _) in enumerate(records)}
contiguous = all([o for o, _ in l] == list(range(len(l)))
                 for l in parts.values())
ok(contiguous, "offsets are contiguous from 0 in every partition")
ordered = all([index[k] for _, k in l] == sorted(index[k] for _, k in l)
              for l in parts.values())
ok(ordered, "per-partition order is the produce order")

# A key always lands in the same partition (kcat's partitioner is by key),
# so consuming one partition gives exactly that partition's records.
r = run(kc + ["-C", "-t", "kcat-keyed", "-p", "1", "-o", "beginning", "-e",
              "-q", "-f", FMT], timeout=60)
p1 = parse_kcat(r.stdout)
is_([(o, k) for _, o, k, _ in p1], parts.get(1), "kcat -C -p 1 reads partition 1 alone")

# Start in the middle: -o 100 on partition 0.
r = run(kc + ["-C", "-t", "kcat-keyed", "-p", "0", "-o", "100", "-e",
              "-q", "-f", FMT], timeout=60)
mid = parse_kcat(r.stdout)
is_([o for _, o, _, _ in mid][:3], [100, 101, 102], "-o 100 starts at offset 100")
is_(len(mid), len(parts.get(0, [])) - 100, "and reads to the end")

# ---- whole files as single binary messages (every byte value)
files = []
blobs = [bytes(range(256)) * 4, rng.randbytes(300000), b"\x00", b"|KEY||REC|\n"]
for i, blob in enumerate(blobs):
    fp = os.path.join(b.tmp, "blob%d.bin" % i)
    with open(fp, "wb") as f:
        f.write(blob)
    files.append(fp)
r = run(kc + ["-P", "-t", "kcat-files", "-p", "0", "-k", "file"] + files,
        timeout=60)
is_(r.returncode, 0, "kcat -P of %d files exits 0" % len(files))
r = run(kc + ["-C", "-t", "kcat-files", "-p", "0", "-o", "beginning", "-e",
              "-q", "-f", FMT], timeout=60)
fgot = parse_kcat(r.stdout)
is_([v for _, _, _, v in fgot], blobs, "binary files come back byte-exact")
is_([k for _, _, k, _ in fgot], [b"file"] * len(blobs), "with their key")

# ---- metadata
r = run(kc + ["-L", "-J"], timeout=30)
is_(r.returncode, 0, "kcat -L -J exits 0")
try:
    md = json.loads(r.stdout)
except ValueError:
    md = {}
    diag(r.stdout[:2000])
brokers = md.get("brokers", [])
is_(len(brokers), 1, "one broker listed")
ok(any(br.get("name") == b.bootstrap for br in brokers),
   "broker advertised as %s" % b.bootstrap)
topics = {t["topic"]: t for t in md.get("topics", [])}
ok("kcat-keyed" in topics and "kcat-files" in topics, "both topics listed")
t = topics.get("kcat-keyed", {})
is_(sorted(p["partition"] for p in t.get("partitions", [])), [0, 1, 2],
    "kcat-keyed has partitions 0, 1, 2")
bid = brokers[0]["id"] if brokers else None
ok(all(p.get("leader") == bid for p in t.get("partitions", [])),
   "every partition is led by the broker")
ok(md.get("controllerid", bid) == bid, "the broker is the controller")

r = run(kc + ["-L"], timeout=30)
text = r.stdout.decode(errors="replace")
ok(re.search(r"broker \d+ at %s" % re.escape(b.bootstrap), text),
   "kcat -L text names the broker")
ok('topic "kcat-keyed" with 3 partitions' in text, "and the topic")

b.stop()
done()
