#!/usr/bin/python3
"""Write the seed corpus of the request fuzzer: tests/fuzz/corpus/.

One valid request frame (int32 size + request header + body) per file,
for every supported API at the edges of its version range, plus a few
pipelines of several frames on one connection. The record batches come
from the broker's own sk_batch_build (core/batch_build.c), compiled into
a throw-away helper, so they carry real CRCs.

Run from the repository root:  /usr/bin/python3 tests/fuzz/make_corpus.py
The output is committed; rerun after changing this script.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")

# The harness creates this topic with 2 partitions on every broker.
TOPIC = "t"
NODE_ID = 0

# Prints one batch on stdout: argv[1] selects which.
BATCH_HELPER = r"""
#include <stdio.h>
#include <string.h>
#include "batch.h"

int main(int argc, char **argv)
{
	struct sk_buf b = { 0 };
	static const struct sk_record_header_in hdrs[] = {
		{ "trace", 5, "abc", 3 },
		{ "empty", 5, NULL, -1 },
	};
	struct sk_record_in recs[] = {
		{ "k", 1, "v", 1, 1700000000000LL, NULL, 0 },
		{ NULL, -1, "value-2", 7, 1700000000005LL, hdrs, 2 },
		{ "k3", 2, NULL, -1, 1700000000002LL, hdrs, 1 },
	};

	if (argc > 1 && strcmp(argv[1], "multi") == 0)
		sk_batch_build(&b, 0, recs, 3, 0, -1, -1, -1);
	else if (argc > 1 && strcmp(argv[1], "idempotent") == 0)
		sk_batch_build(&b, 0, recs, 2, 0, 1000, 0, 0);
	else
		sk_batch_build(&b, 0, recs, 1, 0, -1, -1, -1);
	fwrite(b.data, 1, b.len, stdout);
	return 0;
}
"""

BATCH_SOURCES = ["batch_build.c", "buf.c", "proto.c", "crc32c.c", "util.c"]


def build_batches():
    tmp = tempfile.mkdtemp(prefix="skald-corpus-")
    try:
        src = os.path.join(tmp, "batchgen.c")
        exe = os.path.join(tmp, "batchgen")
        with open(src, "w") as f:
            f.write(BATCH_HELPER)
        cc = os.environ.get("CC", "cc")
        subprocess.check_call(
            [cc, "-std=c11", "-D_GNU_SOURCE", "-pthread",
             "-I" + os.path.join(ROOT, "core"),
             "-I" + os.path.join(ROOT, "include"), "-o", exe, src]
            + [os.path.join(ROOT, "core", s) for s in BATCH_SOURCES])
        return {kind: subprocess.check_output([exe, kind])
                for kind in ("single", "multi", "idempotent")}
    finally:
        shutil.rmtree(tmp)


# --- encoders (classic and flexible) ----------------------------------

def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def string(s, flex=False):
    """A (nullable) string: int16 length, or compact uvarint N+1."""
    if s is None:
        return uvarint(0) if flex else i16(-1)
    b = s.encode() if isinstance(s, str) else s
    return (uvarint(len(b) + 1) if flex else i16(len(b))) + b


def nbytes(b, flex=False):
    if b is None:
        return uvarint(0) if flex else i32(-1)
    return (uvarint(len(b) + 1) if flex else i32(len(b))) + b


def array(items, flex=False):
    """items: list of already-encoded elements, or None for null."""
    if items is None:
        return uvarint(0) if flex else i32(-1)
    head = uvarint(len(items) + 1) if flex else i32(len(items))
    return head + b"".join(items)


def tags(flex):
    return uvarint(0) if flex else b""


_corr = [0]


def frame(api_key, version, body, flex=False, client_id="fuzz"):
    """Size prefix + request header v1 (v2 when flexible) + body."""
    _corr[0] += 1
    hdr = i16(api_key) + i16(version) + i32(_corr[0]) + string(client_id)
    hdr += tags(flex)
    msg = hdr + body
    return i32(len(msg)) + msg


# --- requests -----------------------------------------------------------

def api_versions(v):
    flex = v >= 3
    body = b""
    if flex:
        body = string("skald-fuzz", True) + string("1.0", True) + tags(True)
    return frame(18, v, body, flex)


def metadata(v, topics, auto_create=True):
    body = array(None if topics is None
                 else [string(t) for t in topics])
    if v >= 4:
        body += i8(1 if auto_create else 0)
    return frame(3, v, body)


def produce(v, batch, acks=-1, partition=0, topic=TOPIC):
    part = i32(partition) + nbytes(batch)
    body = string(None) + i16(acks) + i32(30000)
    body += array([string(topic) + array([part])])
    return frame(0, v, body)


def fetch(v, max_wait=0, min_bytes=1, offset=0, partitions=(0, 1),
          isolation=0, topic=TOPIC):
    parts = []
    for p in partitions:
        e = i32(p)
        if v >= 9:
            e += i32(-1)  # current_leader_epoch
        e += i64(offset)
        if v >= 5:
            e += i64(-1)  # log_start_offset (followers only)
        e += i32(1 << 20)
        parts.append(e)
    body = i32(-1) + i32(max_wait) + i32(min_bytes) + i32(50 << 20)
    body += i8(isolation)
    if v >= 7:
        body += i32(0) + i32(-1)  # session id, epoch: sessionless
    body += array([string(topic) + array(parts)])
    if v >= 7:
        body += array([])  # forgotten_topics_data
    if v >= 11:
        body += string("")  # rack_id
    return frame(1, v, body)


def list_offsets(v, queries):
    body = i32(-1)
    if v >= 2:
        body += i8(0)
    parts = [i32(p) + i64(ts) for p, ts in queries]
    body += array([string(TOPIC) + array(parts)])
    return frame(2, v, body)


def create_topics(v, topics, validate_only=False):
    """topics: (name, partitions, rf, assignments, configs)."""
    items = []
    for name, parts, rf, assign, configs in topics:
        e = string(name) + i32(parts) + i16(rf)
        e += array([i32(p) + array([i32(b) for b in brokers])
                    for p, brokers in assign])
        e += array([string(k) + string(val) for k, val in configs])
        items.append(e)
    body = array(items) + i32(30000)
    if v >= 1:
        body += i8(1 if validate_only else 0)
    return frame(19, v, body)


def delete_topics(v, names):
    return frame(20, v, array([string(n) for n in names]) + i32(30000))


def create_partitions(v, topics, validate_only=False):
    """topics: (name, count, assignments or None)."""
    items = []
    for name, count, assign in topics:
        e = string(name) + i32(count)
        e += array(None if assign is None else
                   [array([i32(b) for b in brokers]) for brokers in assign])
        items.append(e)
    body = array(items) + i32(30000) + i8(1 if validate_only else 0)
    return frame(37, v, body)


def describe_configs(v, resources, synonyms=False):
    """resources: (type, name, keys or None)."""
    items = [i8(t) + string(n) + array(None if keys is None else
                                       [string(k) for k in keys])
             for t, n, keys in resources]
    body = array(items)
    if v >= 1:
        body += i8(1 if synonyms else 0)
    return frame(32, v, body)


def alter_configs(v, resources, validate_only=False):
    """resources: (type, name, [(key, value)])."""
    items = [i8(t) + string(n) + array([string(k) + string(val)
                                        for k, val in configs])
             for t, n, configs in resources]
    return frame(33, v, array(items) + i8(1 if validate_only else 0))


def delete_records(v, deletions, topic=TOPIC):
    """deletions: [(partition, offset)]; offset -1 means the high mark."""
    parts = [i32(p) + i64(off) for p, off in deletions]
    return frame(21, v, array([string(topic) + array(parts)]) + i32(30000))


def find_coordinator(v, key, key_type=0):
    body = string(key)
    if v >= 1:
        body += i8(key_type)
    return frame(10, v, body)


# --- consumer groups -------------------------------------------------------

def subscription(topics):
    """ConsumerProtocolSubscription v0, as JoinGroup protocol metadata."""
    return i16(0) + array([string(t) for t in topics]) + nbytes(None)


def assignment(parts):
    """ConsumerProtocolAssignment v0: parts is [(topic, [partition])]."""
    return (i16(0) + array([string(t) + array([i32(p) for p in ps])
                            for t, ps in parts]) + nbytes(None))


def join_group(v, group, member="", instance=None):
    body = string(group) + i32(10000)
    if v >= 1:
        body += i32(30000)  # rebalance_timeout_ms
    body += string(member)
    if v >= 5:
        body += string(instance)
    body += string("consumer")
    body += array([string("range") + nbytes(subscription([TOPIC])),
                   string("roundrobin") + nbytes(subscription([TOPIC]))])
    return frame(11, v, body)


def sync_group(v, group, generation, member, assignments, instance=None):
    body = string(group) + i32(generation) + string(member)
    if v >= 3:
        body += string(instance)
    body += array([string(m) + nbytes(a) for m, a in assignments])
    return frame(14, v, body)


def heartbeat(v, group, generation, member, instance=None):
    body = string(group) + i32(generation) + string(member)
    if v >= 3:
        body += string(instance)
    return frame(12, v, body)


def leave_group(v, group, members):
    """members: [(member_id, group_instance_id)]."""
    if v <= 2:
        return frame(13, v, string(group) + string(members[0][0]))
    return frame(13, v, string(group) + array(
        [string(m) + string(inst) for m, inst in members]))


def offset_commit(v, group, commits, generation=-1, member="",
                  instance=None):
    """commits: [(partition, offset, metadata)] on TOPIC."""
    body = string(group)
    if v >= 1:
        body += i32(generation) + string(member)
    if v >= 7:
        body += string(instance)
    if 2 <= v <= 4:
        body += i64(-1)  # retention_time_ms: broker default
    parts = []
    for p, off, meta in commits:
        e = i32(p) + i64(off)
        if v >= 6:
            e += i32(-1)  # committed_leader_epoch
        if v == 1:
            e += i64(-1)  # commit_timestamp
        e += string(meta)
        parts.append(e)
    body += array([string(TOPIC) + array(parts)])
    return frame(8, v, body)


def offset_fetch(v, group, partitions):
    """partitions: list of TOPIC partitions, or None for all (v2+)."""
    flex = v >= 6
    body = string(group, flex)
    if partitions is None:
        body += array(None, flex)
    else:
        body += array([string(TOPIC, flex)
                       + array([i32(p) for p in partitions], flex)
                       + tags(flex)], flex)
    if v >= 7:
        body += i8(1)  # require_stable
    body += tags(flex)
    return frame(9, v, body, flex)


def describe_groups(v, groups):
    body = array([string(g) for g in groups])
    if v >= 3:
        body += i8(1)  # include_authorized_operations
    return frame(15, v, body)


def list_groups(v):
    return frame(16, v, b"")


def delete_groups(v, groups):
    return frame(42, v, array([string(g) for g in groups]))


def offset_delete(v, group, partitions):
    return frame(47, v, string(group) + array(
        [string(TOPIC) + array([i32(p) for p in partitions])]))


TOPIC_RES = 2   # ConfigResource.Type TOPIC
BROKER_RES = 4  # ConfigResource.Type BROKER


def seeds(batches):
    one, multi = batches["single"], batches["multi"]
    idem = batches["idempotent"]
    s = {}
    s["api_versions_v0"] = api_versions(0)
    s["api_versions_v3"] = api_versions(3)
    s["api_versions_v9_too_new"] = frame(18, 9, b"")  # KIP-511 answer

    s["metadata_v0"] = metadata(0, [TOPIC])
    s["metadata_v0_all"] = metadata(0, [])
    s["metadata_v1_all"] = metadata(1, None)
    s["metadata_v6"] = metadata(6, [TOPIC, "auto-created"])
    s["metadata_v6_no_auto"] = metadata(6, ["missing"], auto_create=False)

    s["produce_v3"] = produce(3, one, acks=1)
    s["produce_v7"] = produce(7, multi, acks=-1, partition=1)
    s["produce_v7_idempotent"] = produce(7, idem, acks=-1)
    s["produce_v5_acks0_noreply"] = produce(5, one, acks=0)
    s["produce_v7_unknown_topic"] = produce(7, one, topic="nope")

    s["fetch_v4"] = fetch(4)
    s["fetch_v11"] = fetch(11)
    s["fetch_v11_read_committed"] = fetch(11, isolation=1)
    s["fetch_v7_out_of_range"] = fetch(7, offset=1 << 40)
    # Long-poll: waits past the harness's patience and is cancelled.
    s["fetch_v11_long_poll_noreply"] = fetch(11, max_wait=5000,
                                             min_bytes=1 << 20)
    # Long-poll: short enough that the harness sees it time out.
    s["fetch_v11_short_poll"] = fetch(11, max_wait=1, min_bytes=1 << 20)

    s["list_offsets_v1"] = list_offsets(1, [(0, -1), (1, -2)])
    s["list_offsets_v3"] = list_offsets(3, [(0, -1), (0, -2),
                                            (1, 1700000000000)])

    s["create_topics_v0"] = create_topics(0, [
        ("seed-c0", 1, 1, [], [("retention.ms", "60000")])])
    s["create_topics_v4"] = create_topics(4, [
        ("seed-c4", -1, -1, [(0, [NODE_ID]), (1, [NODE_ID])],
         [("cleanup.policy", "compact"), ("segment.bytes", "1048576")]),
        ("seed-c4b", 3, 1, [], []),
    ])
    s["create_topics_v4_validate"] = create_topics(4, [
        ("seed-c4v", 2, 1, [], [("max.message.bytes", "1000")])],
        validate_only=True)

    s["delete_topics_v0"] = delete_topics(0, ["seed-c0"])
    s["delete_topics_v3"] = delete_topics(3, ["seed-c4", "seed-c4b"])

    s["create_partitions_v0"] = create_partitions(
        0, [(TOPIC, 3, None)], validate_only=True)
    s["create_partitions_v1"] = create_partitions(
        1, [(TOPIC, 4, [[NODE_ID], [NODE_ID]])], validate_only=True)

    s["describe_configs_v0"] = describe_configs(0, [
        (TOPIC_RES, TOPIC, None), (BROKER_RES, str(NODE_ID), None)])
    s["describe_configs_v2"] = describe_configs(2, [
        (TOPIC_RES, TOPIC, ["retention.ms", "cleanup.policy"])],
        synonyms=True)

    s["alter_configs_v0"] = alter_configs(0, [
        (TOPIC_RES, TOPIC, [("retention.ms", "3600000")])],
        validate_only=True)
    s["alter_configs_v1"] = alter_configs(1, [
        (TOPIC_RES, TOPIC, [("segment.ms", "600000"),
                            ("message.timestamp.type", "LogAppendTime")])])

    s["delete_records_v0"] = delete_records(0, [(0, 1), (1, 1 << 40)])
    s["delete_records_v1"] = delete_records(1, [(1, -1), (7, 0)])

    s["find_coordinator_v0"] = find_coordinator(0, "group")
    s["find_coordinator_v2"] = find_coordinator(2, "txn", key_type=1)

    # Consumer groups. Member ids are the broker's to choose, so a seed
    # cannot follow a join with that member's sync or heartbeat; those
    # seeds exercise the unknown-member answers instead.
    s["join_group_v0"] = join_group(0, "seed-g0")
    s["join_group_v5_member_id_required"] = join_group(5, "seed-g5")
    s["join_group_v5_static"] = join_group(5, "seed-gs", instance="inst-1")
    s["sync_group_v0"] = sync_group(0, "seed-g0", 1, "nobody", [
        ("nobody", assignment([(TOPIC, [0, 1])]))])
    s["sync_group_v3"] = sync_group(3, "seed-gs", 1, "nobody", [],
                                    instance="inst-1")
    s["heartbeat_v0"] = heartbeat(0, "seed-g0", 1, "nobody")
    s["heartbeat_v3"] = heartbeat(3, "seed-gs", 1, "nobody",
                                  instance="inst-1")
    s["leave_group_v0"] = leave_group(0, "seed-g0", [("nobody", None)])
    s["leave_group_v3"] = leave_group(3, "seed-gs", [
        ("", "inst-1"), ("nobody", None)])
    s["offset_commit_v0"] = offset_commit(0, "seed-oc", [(0, 1, "m")])
    s["offset_commit_v1"] = offset_commit(1, "seed-oc", [(1, 2, None)])
    s["offset_commit_v2"] = offset_commit(2, "seed-oc", [(0, 3, "")])
    s["offset_commit_v7"] = offset_commit(7, "seed-oc", [
        (0, 4, "meta"), (1, 5, None)])
    s["offset_fetch_v0"] = offset_fetch(0, "seed-oc", [0, 1])
    s["offset_fetch_v2_all"] = offset_fetch(2, "seed-oc", None)
    s["offset_fetch_v6"] = offset_fetch(6, "seed-oc", [0])
    s["offset_fetch_v7"] = offset_fetch(7, "seed-oc", None)
    s["describe_groups_v0"] = describe_groups(0, ["seed-g0", "seed-oc"])
    s["describe_groups_v4"] = describe_groups(4, ["seed-gs", "none"])
    s["list_groups_v0"] = list_groups(0)
    s["list_groups_v2"] = list_groups(2)
    s["offset_delete_v0"] = offset_delete(0, "seed-oc", [0, 7])
    s["delete_groups_v0"] = delete_groups(0, ["seed-oc", "none"])
    s["delete_groups_v1"] = delete_groups(1, ["seed-g0"])
    s["pipeline_group_offsets"] = (
        offset_commit(7, "seed-pipe-g", [(0, 10, "x"), (1, 20, None)])
        + offset_fetch(7, "seed-pipe-g", [0, 1, 2])
        + offset_delete(0, "seed-pipe-g", [1])
        + delete_groups(1, ["seed-pipe-g"]))

    # Pipelines: several frames on one connection.
    s["pipeline_produce_fetch"] = (
        produce(7, multi) + fetch(11) + list_offsets(3, [(0, -1)]))
    # A long-poll fetch on an empty partition, woken by a produce queued
    # behind it on the same connection.
    s["pipeline_fetch_wait_produce"] = (
        create_topics(4, [("seed-wake", 1, 1, [], [])])
        + fetch(11, max_wait=2000, topic="seed-wake", partitions=(0,))
        + produce(7, one, topic="seed-wake")
        + delete_topics(3, ["seed-wake"]))
    # A long-poll fetch whose topic is deleted while it waits.
    s["pipeline_fetch_wait_delete"] = (
        create_topics(4, [("seed-gone", 2, 1, [], [])])
        + fetch(11, max_wait=2000, topic="seed-gone")
        + delete_topics(3, ["seed-gone"]))
    # Records deleted under a fetch that reads them.
    s["pipeline_produce_delete_records_fetch"] = (
        create_topics(4, [("seed-dr", 1, 1, [], [])])
        + produce(7, multi, topic="seed-dr") + produce(7, one, topic="seed-dr")
        + delete_records(1, [(0, 2)], topic="seed-dr")
        + fetch(11, topic="seed-dr", partitions=(0,))
        + delete_topics(3, ["seed-dr"]))
    s["pipeline_create_produce_delete"] = (
        create_topics(4, [("seed-pipe", 1, 1, [], [])])
        + produce(7, one, topic="seed-pipe")
        + fetch(11, topic="seed-pipe", partitions=(0,))
        + delete_topics(3, ["seed-pipe"]))

    # Harness modes (tests/fuzz/harness.h): 0xfe fixes batch CRCs after
    # mutation, 0xff sends the bytes raw.
    s["crcfix_produce_v3"] = b"\xfe" + produce(3, one)
    s["crcfix_produce_v7_multi"] = b"\xfe" + produce(7, multi, partition=1)
    s["crcfix_produce_v7_idempotent"] = b"\xfe" + produce(7, idem)
    s["crcfix_pipeline_produce_fetch"] = (
        b"\xfe" + produce(7, multi) + produce(7, one)
        + fetch(11, partitions=(0,)))
    s["raw_api_versions_v0"] = b"\xff" + api_versions(0)
    s["raw_metadata_v1_produce_v7"] = (
        b"\xff" + metadata(1, [TOPIC]) + produce(7, one))
    return s


def main():
    batches = build_batches()
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.unlink(os.path.join(OUT, name))
    for name, data in sorted(seeds(batches).items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(os.listdir(OUT)), OUT))


if __name__ == "__main__":
    sys.exit(main())
