#!/usr/bin/python3
# The Lua SDK as an operator installs it: `luarocks make` of the rockspec
# (as docs/hooks.md shows) into a fresh tree, offline; then the example
# hooks' busted specs run against the installed modules alone, from a
# directory that has the examples and the specs but not scripts/skald.
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

if not shutil.which("luarocks") or not shutil.which("luajit") or \
        not os.access("/usr/bin/busted", os.X_OK):
    skip_all("luarocks, luajit or busted (Debian lua-busted) not installed")

tmp = tempfile.mkdtemp(prefix="skald-rock-")
import atexit  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)

tree = os.path.join(tmp, "tree")
rock = os.path.join(REPO, "rockspec", "skald-hooks-0.1.0-1.rockspec")
r = run(["luarocks", "--lua-version=5.1", "make", "--deps-mode=none",
         "--tree", tree, rock], cwd=REPO, timeout=120)
ok(r.returncode == 0, "luarocks make installs the SDK (%s)" %
   (r.stdout + r.stderr).decode("utf-8", "replace").strip()[-300:])
lua = os.path.join(tree, "share", "lua", "5.1")
ok(os.path.isfile(os.path.join(lua, "skald.lua")) and
   os.path.isfile(os.path.join(lua, "skald", "test.lua")),
   "it installed skald and skald.test")

# A project of the operator's: their hooks and specs, no Skald sources.
proj = os.path.join(tmp, "proj")
os.makedirs(os.path.join(proj, "scripts"))
os.symlink(os.path.join(REPO, "scripts", "examples"),
           os.path.join(proj, "scripts", "examples"))
os.symlink(os.path.join(REPO, "spec"), os.path.join(proj, "spec"))
env = dict(os.environ,
           LUA_PATH="%s/?.lua;%s/?/init.lua;;" % (lua, lua))
r = run(["luajit", "/usr/bin/busted", "-o", "TAP", "spec"], cwd=proj,
        env=env, timeout=120)
out = r.stdout.decode("utf-8", "replace")
oks = [l for l in out.splitlines() if l.startswith("ok ")]
ok(r.returncode == 0 and len(oks) >= 10 and "not ok" not in out,
   "the example specs pass with the installed SDK only (%d passed)%s" %
   (len(oks), "" if r.returncode == 0 else ": " + out[-600:]))
done()
