#!/usr/bin/python3
# skald hook-test: the broker's embedding run offline over JSON lines, as
# docs/hooks.md has hook authors use it. One JSON line out per record
# (written, dropped, or a copy emitted to another topic), what the hook
# logs on stderr, and errors that name the script line or the input line,
# with exit status 1.
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

tmp = tempfile.mkdtemp(prefix="skald-hook-test-")
import atexit  # noqa: E402
import shutil  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)

EX = os.path.join(REPO, "scripts", "examples")


def hook_test(script, lines, *args):
    """(status, [JSON lines of stdout], stderr) of hook-test over lines."""
    r = run([SKALD, "hook-test", script] + list(args), cwd=tmp,
            input="".join(json.dumps(x) + "\n" if not isinstance(x, str)
                          else x + "\n" for x in lines).encode())
    out = [json.loads(x) for x in r.stdout.decode().splitlines() if x]
    return r.returncode, out, r.stderr.decode("utf-8", "replace")


def script(name, body):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(body)
    return path


# --- the examples --------------------------------------------------------
rc, out, err = hook_test(
    os.path.join(EX, "drop_filter.lua"),
    [{"key": "k1", "value": "a DEBUG"},
     {"value": "b", "headers": {"h": "x"}, "timestamp": 1700000000000},
     {"key": None, "value": None}],
    "--options", '{"pattern": "DEBUG"}')
is_(rc, 0, "drop_filter.lua: exit 0 (%s)" % err.strip())
is_(out[:2], [{"offset_delta": 0, "dropped": True},
              {"offset_delta": 1, "key": None, "value": "b",
               "headers": {"h": "x"}, "timestamp": 1700000000000}],
    "the DEBUG record dropped, the next written as it came")
ok(len(out) == 3 and out[2]["key"] is None and out[2]["value"] is None,
   "a null key and value stay null")

rc, out, err = hook_test(
    os.path.join(EX, "mask_pii.lua"),
    [{"value": '{"card": "4111111111111111", "n": 1,'
               ' "email": "ann@example.com"}'}],
    "--options", '{"fields": ["card", "email"]}')
is_((rc, [o.get("value") for o in out]),
    (0, ['{"card": "************1111", "n": 1,'
         ' "email": "****@example.com"}']),
    "mask_pii.lua: the fields masked, every other byte kept")

rc, out, err = hook_test(
    os.path.join(EX, "router.lua"),
    [{"value": "ERROR disk"}, {"value": "fine"}],
    "--options", '{"match": "ERROR", "to": "errors"}', "--topic", "app")
emits = [o for o in out if "emit" in o]
ok(rc == 0 and len(out) == 3 and len(emits) == 1 and
   emits[0]["emit"] == "errors" and emits[0]["value"] == "ERROR disk" and
   emits[0]["headers"].get("routed-from") == "app",
   "router.lua: both records written, one copy emitted to errors (%s)"
   % out)

# --- logs and errors --------------------------------------------------------
logger = script("logger.lua", """return { on_record = function(rec)
  skald.log.info("saw " .. rec.value)
  skald.log.warn("careful with " .. rec.value)
  return rec
end }
""")
rc, out, err = hook_test(logger, [{"value": "v1"}], "--topic", "t1")
ok(rc == 0 and "info" in err and "saw v1" in err and
   "warn" in err and "careful with v1" in err and "(topic t1)" in err,
   "skald.log.info and .warn lines go to stderr, with the topic (%s)"
   % err.strip())

# skald.log is limited to 20 lines a second per hook state; what was
# dropped is counted when the next second starts.
chatty = script("chatty.lua", """return { on_batch = function(b)
  for i = 1, 30 do skald.log.info("line " .. i) end
  local t = skald.now()
  while skald.now() - t < 1100 do end
  skald.log.info("after")
end }
""")
rc, out, err = hook_test(chatty, [{"value": "a"}], "--timeout-ms", "5000")
shown = [l for l in err.splitlines() if ": line " in l]
ok(rc == 0 and len(shown) == 20 and
   "10 log lines suppressed (at most 20 a second)" in err and
   err.rstrip().endswith("after"),
   "skald.log: 20 lines a second, the 10 dropped counted in the next "
   "(%d shown; %s)" % (len(shown), err.strip()[-200:]))

boom = script("boom.lua", """return { on_record = function(rec)
  if rec.value == "x" then
    error("refused " .. rec.value)
  end
  return rec
end }
""")
rc, out, err = hook_test(boom, [{"value": "ok"}, {"value": "x"}])
ok(rc == 1 and out and "error" in out[-1] and
   "boom.lua:3: refused x" in out[-1]["error"],
   "an error in the hook: exit 1, naming the script line (%s)" % out)

spin = script("spin.lua", """return { on_record = function(rec)
  local n = 0
  while true do n = n + 1 end
end }
""")
rc, out, err = hook_test(spin, [{"value": "a"}], "--timeout-ms", "100")
ok(rc == 1 and out and
   out[-1].get("error", "").endswith(
       "spin.lua:3: timeout: the hook ran past timeout.ms"),
   "a loop is cut off at --timeout-ms, the error at its line (%s)" % out)

broken = script("broken.lua", "return {\n")
rc, out, err = hook_test(broken, [{"value": "a"}])
ok(rc == 1 and "broken.lua:2:" in err and not out,
   "a script that does not compile: exit 1, FILE:LINE (%s)" % err.strip())

rc, out, err = hook_test(os.path.join(tmp, "missing.lua"), [])
ok(rc == 1 and "missing.lua: cannot open" in err,
   "a missing script: exit 1 (%s)" % err.strip())

rc, out, err = hook_test(logger, [{"value": "a"}, "not json"])
ok(rc == 1 and "line 2:" in err,
   "an input line that is not JSON: exit 1, naming the line (%s)"
   % err.strip())

for opts, want in (("nope", "--options: skald.json.decode:"),
                   ('"text"', "--options: expected a JSON object")):
    rc, out, err = hook_test(logger, [{"value": "a"}], "--options", opts)
    ok(rc == 1 and want in err and not out,
       "--options %s: exit 1, saying so (%s)" % (opts, err.strip()))

nohooks = script("nohooks.lua", "return { retain = function() end }\n")
rc, out, err = hook_test(nohooks, [{"value": "a"}])
ok(rc == 1 and "neither on_record nor on_batch" in err,
   "a script without on_record or on_batch: exit 1 (%s)" % err.strip())
done()
