#!/usr/bin/python3
# The plugin SDK as a third party uses it: `make install` into a temporary
# DESTDIR puts the broker, the headers and skald-plugin.pc in place; the
# example plugin (examples/plugin-hello), copied out of the tree, builds
# with nothing but `pkg-config --cflags skald-plugin`; the installed
# broker loads it from `plugins:` in a YAML file, it logs from start, it
# keeps state in the key/value store across restarts, and it is finished
# on shutdown. Then the loader's refusals through the command line: exit
# status 1 and a message naming the file.
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

tmp = tempfile.mkdtemp(prefix="skald-sdk-")
import atexit  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)


def text(b):
    return b.decode("utf-8", "replace")


prefix = "/opt/skald-test"
destdir = os.path.join(tmp, "stage")
root = destdir + prefix

# ------------------------------------------------------------ make install
build = os.path.relpath(BUILD, REPO) if BUILD.startswith(REPO) else BUILD
make = ["make", "-C", REPO, "--no-print-directory", "BUILD=" + build,
        "PREFIX=" + prefix, "DESTDIR=" + destdir, "install"]
if os.environ.get("SKALD_SAN"):
    make.append("SAN=" + os.environ["SKALD_SAN"])
r = run(make, timeout=600)
if not ok(r.returncode == 0, "make install PREFIX=%s DESTDIR=..." % prefix):
    diag(text(r.stdout)[-2000:])
    diag(text(r.stderr)[-2000:])
    bail_out("cannot install")
for rel in ("bin/skald", "include/skald/plugin.h", "include/skald/host.h",
            "include/skald/record.h", "include/skald/storage.h",
            "include/skald/version.h", "lib/pkgconfig/skald-plugin.pc"):
    ok(os.path.isfile(os.path.join(root, rel)), "installed %s" % rel)
ok(os.access(os.path.join(root, "bin/skald"), os.X_OK),
   "the broker is executable")
with open(os.path.join(root, "lib/pkgconfig/skald-plugin.pc")) as f:
    pc = f.read()
ok("prefix=%s\n" % prefix in pc and "@" not in pc,
   "skald-plugin.pc names the real prefix, every @VAR@ substituted")

# ------------------------------------------------------------ pkg-config
env = {"PKG_CONFIG_PATH": os.path.join(root, "lib/pkgconfig"),
       "PKG_CONFIG_SYSROOT_DIR": destdir}
r = run(["pkg-config", "--cflags", "skald-plugin"], env=env)
cflags = text(r.stdout).split()
is_(cflags, ["-I%s/include" % root],
    "pkg-config --cflags skald-plugin gives the staged include directory")
r = run(["pkg-config", "--modversion", "skald-plugin"], env=env)
ok(r.returncode == 0 and text(r.stdout).strip(),
   "pkg-config --modversion: %s" % text(r.stdout).strip())
r = run(["pkg-config", "--variable=abi_major", "skald-plugin"], env=env)
is_(text(r.stdout).strip(), "1", "the .pc says ABI major 1")

# ------------------------------------------------------------ out of tree
src = os.path.join(tmp, "hello-src")
shutil.copytree(os.path.join(REPO, "examples", "plugin-hello"), src)
r = run(["make", "-C", src, "--no-print-directory"], env=env)
if not ok(r.returncode == 0, "the example builds out of tree with make "
          "and pkg-config"):
    diag(text(r.stdout) + text(r.stderr))
so = os.path.join(src, "hello.so")
ok(os.path.isfile(so), "hello.so built")
ok(("-I%s/include" % root) in text(r.stdout) and
   os.path.join(REPO, "include") not in text(r.stdout),
   "its compile line uses the installed headers, not the source tree")
# Also by hand, exactly as docs/plugins.md says.
r = run(["sh", "-c", "cc -std=c11 -Wall -Werror -fPIC -shared "
         "-fvisibility=hidden $(pkg-config --cflags skald-plugin) "
         "-o hello2.so hello.c"], env=env, cwd=src)
ok(r.returncode == 0, "cc $(pkg-config --cflags skald-plugin) works too")

# ------------------------------------------------------------ load it
SKALD_INSTALLED = os.path.join(root, "bin", "skald")


class Installed(Broker):
    def argv(self):
        a = super().argv()
        a[0] = SKALD_INSTALLED
        return a


b = Installed(config="plugins:\n"
              "  - path: %s\n"
              "    config:\n"
              "      greeting: \"hej\"\n"
              "      tick_ms: 20\n" % so)
ok(wait_until(lambda: "[hello] hej, world, from an out-of-tree plugin "
              "(start number 1" in b.log(), 10),
   "the installed broker loaded it and it logged from start()")
ok("plugin hello 1.0.0 loaded from %s" % so in b.log(),
   "the broker's own line names the file")
b.stop(name="stops cleanly with the plugin loaded")
ok("[hello] goodbye" in b.log(), "fini ran at shutdown")
b.start()
ok(wait_until(lambda: "(start number 2" in b.log(), 10),
   "after a restart it read its state from the key/value store")
b.stop(name="stops cleanly again")

# ------------------------------------------------------------ refusals
TP = os.path.join(BUILD, "tests", "plugins")


def refused(name, plugin, config, want):
    y = os.path.join(tmp, name + ".yaml")
    with open(y, "w") as f:
        f.write("plugins:\n  - path: %s\n" % os.path.join(TP, plugin))
        if config:
            f.write("    config:\n" + "".join(
                "      %s: %s\n" % kv for kv in config))
    r = run([SKALD, "--config", y, "--check-config"], cwd=tmp)
    err = text(r.stderr)
    if not ok(r.returncode == 1 and want in err and
              os.path.join(TP, plugin) in err,
              "--check-config refuses %s, naming the file" % name):
        diag(err)
    d = os.path.join(tmp, "d-" + name)
    r = run([SKALD, "--config", y, "--data-dir", d, "--listen",
             "127.0.0.1:%d" % free_port()], cwd=tmp, timeout=30)
    err = text(r.stderr)
    if not ok(r.returncode == 1 and "cannot start: " in err and want in err,
              "the broker does not start with %s" % name):
        diag(err)
    return err


refused("abi_major_plus1", "abi_major_plus1.so", None,
        "plugin ABI major version: expected 1, found 2")
refused("abi_minor_plus1", "abi_minor_plus1.so", None,
        "plugin ABI minor version: expected at most 1 (ABI 1.1), found 2")
refused("bad_sig", "bad_sig.so", None, "plugin build signature: expected")
refused("small_desc_size", "small_desc_size.so", None,
        "plugin descriptor size: expected at least")
refused("missing_symbol", "missing_symbol.so", None,
        "cannot load: undefined symbol: sk_plugin_no_such_symbol")
refused("bad_config", "bad_config.so", [("endpoint", "x"), ("port", "0")],
        ".yaml:5: plugins[0].config.port: expected an integer in "
        "[1, 65535], got '0'")
ok(not os.path.exists(os.path.join(tmp, "d-bad_config")),
   "a refused plugin leaves no data directory behind")

# failing init and start: checked at start, not by --check-config
for name, want in (("failing_init", "plugin failing_init: init failed: "
                    "cannot reach the moon (No route to host)"),
                   ("failing_start", "plugin failing_start: start failed: "
                    "the moon is not up yet")):
    y = os.path.join(tmp, name + ".yaml")
    with open(y, "w") as f:
        f.write("plugins:\n  - path: %s.so\n" % os.path.join(TP, name))
    r = run([SKALD, "--config", y, "--data-dir", os.path.join(tmp, name),
             "--listen", "127.0.0.1:%d" % free_port()], cwd=tmp, timeout=30)
    err = text(r.stderr)
    if not ok(r.returncode == 1 and want in err,
              "%s: exit 1 with the plugin's reason" % name):
        diag(err)
    ok("fini called" not in err and "Sanitizer" not in err,
       "%s: no fini after a failed init, no sanitizer report" % name)

y = os.path.join(tmp, "tier.yaml")
with open(y, "w") as f:
    f.write("plugins:\n  - path: %s\nstorage:\n  tier: tier-s3\n" %
            os.path.join(TP, "tier_mem.so"))
r = run([SKALD, "--config", y, "--data-dir", os.path.join(tmp, "tier"),
         "--listen", "127.0.0.1:%d" % free_port()], cwd=tmp, timeout=30)
ok(r.returncode == 1 and "tier.yaml:4: storage.tier: expected the name of "
   "a loaded plugin that provides a storage tier (tier_mem), found "
   "'tier-s3'" in text(r.stderr),
   "storage.tier must name a loaded tier")
done()
