#!/usr/bin/python3
# The public plugin headers (include/skald/*.h): each compiles alone as C
# (C99, C11) and C++ (C++11, C++17) with every warning an error; none
# includes anything but the standard library and its siblings; and no
# member or constant of the frozen ABI 1.0 (tests/abi/v1.0) moved or
# changed (tests/abi/layout.c built against both and compared).
import glob
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from skald import *  # noqa: E402,F403

tmp = tempfile.mkdtemp(prefix="skald-headers-")
import atexit  # noqa: E402
import shutil  # noqa: E402
atexit.register(shutil.rmtree, tmp, True)

INC = os.path.join(REPO, "include")
headers = sorted(glob.glob(os.path.join(INC, "skald", "*.h")))
ok(len(headers) >= 7, "public headers found: %s" %
   " ".join(os.path.basename(h) for h in headers))

FLAGS = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-Wshadow",
         "-Wstrict-prototypes"]
COMPILERS = [("cc", "c", "c99"), ("cc", "c", "c11"),
             ("c++", "c++", "c++11"), ("c++", "c++", "c++17")]
for h in headers:
    name = os.path.basename(h)
    # One translation unit that includes only this header (plus a
    # declaration: ISO C forbids an empty unit).
    src = os.path.join(tmp, "only_" + name.replace(".h", ".c"))
    with open(src, "w") as f:
        f.write("#include <skald/%s>\nint skald_header_test_%s;\n" %
                (name, name.replace(".", "_")))
    for cc, lang, std in COMPILERS:
        flags = [f for f in FLAGS
                 if not (lang == "c++" and f == "-Wstrict-prototypes")]
        r = run([cc, "-x", lang, "-std=" + std, "-fsyntax-only", "-I" + INC]
                + flags + [src])
        if not ok(r.returncode == 0,
                  "%s compiles alone as %s" % (name, std)):
            diag(r.stderr.decode("utf-8", "replace"))
    with open(h) as f:
        incs = re.findall(r'^\s*#\s*include\s+([<"][^>"]+[>"])', f.read(),
                          re.M)
    siblings = {'"%s"' % os.path.basename(x) for x in headers}
    std = {"<stdarg.h>", "<stddef.h>", "<stdint.h>", "<time.h>"}
    bad = [i for i in incs if i not in siblings and i not in std]
    ok(not bad, "%s includes only the standard library and siblings%s" %
       (name, (": not " + ", ".join(bad)) if bad else ""))

# The frozen 1.0 copy still compiles, and the layout is unchanged.
outs = []
for label, inc in (("v1.0", os.path.join(REPO, "tests", "abi", "v1.0")),
                   ("current", INC)):
    exe = os.path.join(tmp, "layout-" + label)
    r = run(["cc", "-std=c11", "-Wall", "-Werror", "-I" + inc, "-o", exe,
             os.path.join(REPO, "tests", "abi", "layout.c")])
    if not ok(r.returncode == 0, "layout.c builds against %s" % label):
        diag(r.stderr.decode("utf-8", "replace"))
        outs.append("")
        continue
    outs.append(run([exe]).stdout.decode())
lines = outs[0].splitlines()
ok(len(lines) > 100, "layout lists %d members and constants" % len(lines))
moved = [l for l in lines if l not in outs[1].splitlines()]
if not ok(not moved, "every ABI 1.0 member keeps its offset and size, "
          "every constant its value"):
    for l in moved[:20]:
        diag("1.0: %s" % l)

# A plugin can be built from the headers alone, without -Icore.
src = os.path.join(REPO, "tests", "plugins", "lifecycle.c")
r = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC",
         "-shared", "-fvisibility=hidden", "-I" + INC, "-o",
         os.path.join(tmp, "lifecycle.so"), src])
ok(r.returncode == 0, "a test plugin builds with only -Iinclude")
r = run(["nm", "-D", "--defined-only", os.path.join(tmp, "lifecycle.so")])
syms = [l.split()[-1] for l in r.stdout.decode().splitlines()
        if l.split() and l.split()[-2] in ("T", "D", "R", "B")]
is_(syms, ["skald_plugin_desc"], "it exports only skald_plugin_desc")
done()
