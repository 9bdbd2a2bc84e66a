# Skald: one non-recursive Makefile.
#
#   make            build build/skald
#   make run        build and start a single-node broker (127.0.0.1:9092, ./data)
#   make test       build, run every test, then the same suite under ASan+UBSan
#   make test-asan  only the sanitizer run
#   make fuzz       run the request-decoder fuzzer for FUZZ_SECONDS
#   make style      check formatting with clang-format (part of make test)
#   make format     apply it
#   make bench      run the benchmark matrix, write bench/RESULTS.md
#   make plugins    build plugins/*/ and the test plugins as .so files
#   make install    install the broker, the plugin headers, skald-plugin.pc
#                   and the plugins under PREFIX (default /usr/local),
#                   staged under DESTDIR if given

.DEFAULT_GOAL := all

BUILD    ?= build
CC       ?= cc
PKGS     := yaml-0.1 sqlite3 zlib snappy liblz4 libzstd luajit libmicrohttpd
SAN      ?=
FUZZ_SECONDS ?= 60

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
	-Wno-missing-field-initializers -g -O2 -pthread -MMD -MP \
	-Icore -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
ifeq ($(SAN),1)
CFLAGS_BASE += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
LDFLAGS_SAN := -fsanitize=address,undefined
endif
CFLAGS  ?=
CFLAGS  += $(CFLAGS_BASE)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm -pthread
LDFLAGS += $(LDFLAGS_SAN)

CORE_SRCS := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o)
# The hook prelude embeds these Lua files (.incbin: -MMD cannot see them).
$(BUILD)/core/hook_prelude.o: scripts/skald/prelude.lua scripts/skald/skald.lua
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test test-asan check unit-bins fuzz style format clean \
	plugins install
all: deps $(BUILD)/skald $(UNIT_BINS) plugins

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libskald.a: $(CORE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/skald: $(BUILD)/core/main.o $(BUILD)/libskald.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libskald.a tests/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(BUILD)/libskald.a $(LDLIBS)

# test_requests drives the broker through the fuzz harness.
$(BUILD)/tests/fuzz/harness.o: tests/fuzz/harness.h
$(BUILD)/tests/test_requests: tests/unit/test_requests.c \
		$(BUILD)/tests/fuzz/harness.o $(BUILD)/libskald.a tests/tap.h \
		tests/fuzz/harness.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< \
		$(BUILD)/tests/fuzz/harness.o $(BUILD)/libskald.a $(LDLIBS)

unit-bins: $(BUILD)/skald $(UNIT_BINS) plugins

# Plugins (issue 6). A plugin is built from the public headers alone, as
# a third party would: -Iinclude, never -Icore, and it links nothing of
# the broker's (the host table is its only way in). plugins/NAME/*.c
# becomes $(BUILD)/plugins/NAME.so; tests/plugins/X.c becomes
# $(BUILD)/tests/plugins/X.so, except abi_compat.c, built against the
# frozen ABI 1.0 headers only. In a sanitizer build the plugins are
# instrumented too.
PLUGIN_SAN := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
PLUGIN_CFLAGS := -std=c11 -Wall -Wextra -Werror -Wshadow -g -O2 -fPIC \
	-fvisibility=hidden -pthread $(if $(filter 1,$(SAN)),$(PLUGIN_SAN))
PLUGIN_NAMES := $(notdir $(patsubst %/,%,$(wildcard plugins/*/)))
PLUGINS := $(PLUGIN_NAMES:%=$(BUILD)/plugins/%.so)
TEST_PLUGINS := $(patsubst tests/plugins/%.c,$(BUILD)/tests/plugins/%.so,\
	$(wildcard tests/plugins/*.c))
PUBLIC_HEADERS := $(wildcard include/skald/*.h)
# tier-s3 speaks S3 over HTTP with libcurl (SigV4 signing built in).
PLUGIN_LIBS_tier-s3 := $(shell pkg-config --libs libcurl 2>/dev/null)

plugins: $(PLUGINS) $(TEST_PLUGINS)

$(BUILD)/tests/plugins/%.so: tests/plugins/%.c $(PUBLIC_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -Iinclude -shared -o $@ $<

$(BUILD)/tests/plugins/abi_compat.so: tests/plugins/abi_compat.c \
		$(wildcard tests/abi/v1.0/skald/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -Itests/abi/v1.0 -shared -o $@ $<

.SECONDEXPANSION:
$(BUILD)/plugins/%.so: $$(wildcard plugins/%/*.c) $$(wildcard plugins/%/*.h) \
		$(PUBLIC_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -Iinclude -shared -o $@ \
		$(filter %.c,$^) $(PLUGIN_LIBS_$*)

# test_plugin loads the .so files above from this build.
$(BUILD)/tests/test_plugin: private CFLAGS += \
	-DSK_TEST_BUILD=\"$(abspath $(BUILD))\"
$(BUILD)/tests/test_plugin: | plugins

# Installation. skald-plugin.pc gives a third party the flags to build a
# plugin against the installed headers: pkg-config --cflags skald-plugin.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(PREFIX)/bin
INCLUDEDIR := $(PREFIX)/include
LIBDIR := $(PREFIX)/lib
PLUGINDIR := $(LIBDIR)/skald/plugins
PKGCONFIGDIR := $(LIBDIR)/pkgconfig
ABI_MAJOR = $(shell sed -n 's/^\#define SKALD_ABI_MAJOR //p' include/skald/version.h)
ABI_MINOR = $(shell sed -n 's/^\#define SKALD_ABI_MINOR //p' include/skald/version.h)
SKALD_VERSION = $(shell sed -n 's/^\#define SKALD_VERSION "\(.*\)"/\1/p' \
	include/skald/version.h)

$(BUILD)/skald-plugin.pc: skald-plugin.pc.in include/skald/version.h
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
		-e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@PLUGINDIR@|$(PLUGINDIR)|g' \
		-e 's|@VERSION@|$(SKALD_VERSION)|g' \
		-e 's|@ABI_MAJOR@|$(ABI_MAJOR)|g' \
		-e 's|@ABI_MINOR@|$(ABI_MINOR)|g' $< > $@

# Regenerated every time: PREFIX may differ from the last install.
.PHONY: $(BUILD)/skald-plugin.pc
install: $(BUILD)/skald $(PLUGINS) $(BUILD)/skald-plugin.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR)/skald \
		$(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PLUGINDIR)
	install -m 755 $(BUILD)/skald $(DESTDIR)$(BINDIR)/skald
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(INCLUDEDIR)/skald/
	install -m 644 $(BUILD)/skald-plugin.pc \
		$(DESTDIR)$(PKGCONFIGDIR)/skald-plugin.pc
	$(if $(PLUGINS),install -m 755 $(PLUGINS) $(DESTDIR)$(PLUGINDIR)/)

# Durability tests (issue 4): the log compiled against the test I/O layer
# (core/io.h with -DSK_IO_TEST: tests/unit/io_shim.c records writes and
# syncs, injects errors and simulates power loss). Listed ahead of
# libskald.a, these objects stand in for the archive's log_*.o.
IO_TEST_BINS := $(BUILD)/tests/test_crash $(BUILD)/tests/test_diskerr
IO_TEST_OBJS := $(patsubst %.c,$(BUILD)/iotest/%.o,$(wildcard core/log_*.c)) \
	$(BUILD)/iotest/tests/unit/io_shim.o

$(BUILD)/iotest/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSK_IO_TEST -Itests/unit -c -o $@ $<

$(IO_TEST_BINS): $(BUILD)/tests/%: tests/unit/%.c $(IO_TEST_OBJS) \
		$(BUILD)/libskald.a tests/tap.h tests/unit/io_shim.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSK_IO_TEST -Itests -Itests/unit $(LDFLAGS) -o $@ $< \
		$(IO_TEST_OBJS) $(BUILD)/libskald.a $(LDLIBS)

# meta.db and offsets.db under power loss: the real stores over a test
# sqlite VFS (tests/unit/sqlite_crash_vfs.c) that drops unsynced writes.
$(BUILD)/tests/test_meta: tests/unit/test_meta.c \
		tests/unit/sqlite_crash_vfs.c tests/unit/sqlite_crash_vfs.h \
		$(BUILD)/libskald.a tests/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Itests/unit $(LDFLAGS) -o $@ $< \
		tests/unit/sqlite_crash_vfs.c $(BUILD)/libskald.a $(LDLIBS)

# Recovery benchmarks (issue 4): bench/durability.py writes logs with this
# helper and times recovery and restarts into bench/RESULTS-durability.md.
$(BUILD)/skald-logfill: bench/logfill.c $(BUILD)/libskald.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libskald.a $(LDLIBS)

.PHONY: bench-durability
bench-durability: $(BUILD)/skald $(BUILD)/skald-logfill
	/usr/bin/python3 bench/durability.py --build $(BUILD)

# The process-crash loop (tests/integration/96-crash-loop.t) with many
# cycles; make test runs 3. make test-crash CYCLES=1000
.PHONY: test-crash
test-crash: $(BUILD)/skald
	CYCLES=$(or $(CYCLES),1000) SKALD_BUILD=$(abspath $(BUILD)) \
		prove -v tests/integration/96-crash-loop.t

run: deps $(BUILD)/skald
	$(BUILD)/skald

# The suite: unit binaries and integration scripts, all TAP, run by prove.
# SKALD_BUILD tells the scripts which build to exercise.
check: unit-bins
	SKALD_BUILD=$(abspath $(BUILD)) SKALD_SAN=$(SAN) \
		prove -f --timer $(UNIT_BINS) \
		$(sort $(wildcard tests/integration/*.t))

test: deps
	$(MAKE) style
	$(MAKE) check
	$(MAKE) test-asan

test-asan: deps
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) BUILD=build/asan SAN=1 check

# libFuzzer needs clang; a separate build directory keeps flags apart.
# CFLAGS given on the command line replaces the Makefile's, so the base
# flags are passed along (less -O2 and -Werror: clang's warnings differ).
# Undefined behaviour aborts, so that the fuzzer records it as a crash.
# TMPDIR holds the fuzzed broker's data directory.
FUZZ_BUILD := build/fuzz
FUZZ_CFLAGS := $(filter-out -O2 -Werror,$(CFLAGS_BASE)) -O1 \
	-fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=undefined
fuzz: deps
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SAN= CFLAGS="$(FUZZ_CFLAGS)" \
		$(FUZZ_BUILD)/libskald.a
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Icore \
		-Iinclude -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined \
		-o $(FUZZ_BUILD)/fuzz_request tests/fuzz/fuzz_request.c \
		tests/fuzz/harness.c $(FUZZ_BUILD)/libskald.a $(LDLIBS)
	@mkdir -p $(FUZZ_BUILD)/corpus
	$(FUZZ_BUILD)/fuzz_request -max_total_time=$(FUZZ_SECONDS) \
		-max_len=8192 -artifact_prefix=$(FUZZ_BUILD)/ \
		$(FUZZ_BUILD)/corpus tests/fuzz/corpus tests/fuzz/regress

# The format is checked by `make test`; `make format` applies it.
STYLE_SRCS = core/*.c core/*.h tests/unit/*.c plugins/*/*.c bench/*.c

style:
	@clang-format --dry-run --Werror $(STYLE_SRCS)

format:
	clang-format -i $(STYLE_SRCS)

# Benchmarks (issue 7), never part of `make test`: the load generator,
# librdkafka's mock cluster as a peer broker, and the matrix that runs
# them side by side and writes bench/RESULTS.md. BENCH_QUICK=1 is a
# short smoke run.
RDKAFKA_CFLAGS = $(shell pkg-config --cflags rdkafka 2>/dev/null)
RDKAFKA_LIBS = $(shell pkg-config --libs rdkafka 2>/dev/null)

$(BUILD)/skald-bench: bench/skald_bench.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(RDKAFKA_CFLAGS) -o $@ $< $(RDKAFKA_LIBS) -lm -pthread

$(BUILD)/skald-mock: bench/mock_broker.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(RDKAFKA_CFLAGS) -o $@ $< $(RDKAFKA_LIBS) -pthread

.PHONY: bench
# The full run first measures the hooks and the tiers (their own
# sections, RESULTS-hooks.md and RESULTS-tier.md), which run.py then
# includes in RESULTS.md.
bench: deps $(BUILD)/skald $(BUILD)/skald-bench $(BUILD)/skald-mock plugins
	$(if $(filter 1,$(BENCH_QUICK)),,SKALD=$(BUILD)/skald \
		bench/hooks_bench.sh 200000 25 > /dev/null)
	$(if $(filter 1,$(BENCH_QUICK)),,/usr/bin/python3 bench/tier_bench.py \
		--results --build $(BUILD))
	/usr/bin/python3 bench/run.py --build $(BUILD) $(if $(filter 1,\
		$(BENCH_QUICK)),--quick --out $(BUILD)/RESULTS-quick.md,\
		--out bench/RESULTS.md)

clean:
	rm -rf build

# Test objects too: a stale harness.o after a change to struct sk_broker
# crashes test_requests.
-include $(CORE_OBJS:.o=.d) $(BUILD)/core/main.d \
	$(BUILD)/tests/fuzz/harness.d $(UNIT_BINS:=.d)
-include $(IO_TEST_OBJS:.o=.d)
