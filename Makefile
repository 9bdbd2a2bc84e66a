# Skald: one non-recursive Makefile.
#
#   make            build build/skald
#   make run        build and start a single-node broker (127.0.0.1:9092, ./data)
#   make test       build, run every test, then the same suite under ASan+UBSan
#   make test-asan  only the sanitizer run
#   make fuzz       run the request-decoder fuzzer for FUZZ_SECONDS
#   make style      check formatting with clang-format
#   make bench      run the benchmark matrix, write bench/RESULTS.md

BUILD    ?= build
CC       ?= cc
PKGS     := yaml-0.1 sqlite3 zlib snappy liblz4 libzstd
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
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test test-asan check unit-bins fuzz style clean
all: deps $(BUILD)/skald $(UNIT_BINS)

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

unit-bins: $(BUILD)/skald $(UNIT_BINS)

run: deps $(BUILD)/skald
	$(BUILD)/skald

# The suite: unit binaries and integration scripts, all TAP, run by prove.
# SKALD_BUILD tells the scripts which build to exercise.
check: unit-bins
	SKALD_BUILD=$(abspath $(BUILD)) prove -f --timer $(UNIT_BINS) \
		$(sort $(wildcard tests/integration/*.t))

test: deps
	$(MAKE) check
	$(MAKE) test-asan

test-asan: deps
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) BUILD=build/asan SAN=1 check

# libFuzzer needs clang; a separate build directory keeps flags apart.
# CFLAGS given on the command line replaces the Makefile's, so the base
# flags are passed along (less -O2 and -Werror: clang's warnings differ).
# TMPDIR holds the fuzzed broker's data directory.
FUZZ_BUILD := build/fuzz
FUZZ_CFLAGS := $(filter-out -O2 -Werror,$(CFLAGS_BASE)) -O1 \
	-fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
fuzz: deps
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SAN= CFLAGS="$(FUZZ_CFLAGS)" \
		$(FUZZ_BUILD)/libskald.a
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Icore \
		-Iinclude -fsanitize=fuzzer,address,undefined \
		-o $(FUZZ_BUILD)/fuzz_request tests/fuzz/fuzz_request.c \
		tests/fuzz/harness.c $(FUZZ_BUILD)/libskald.a $(LDLIBS)
	@mkdir -p $(FUZZ_BUILD)/corpus
	$(FUZZ_BUILD)/fuzz_request -max_total_time=$(FUZZ_SECONDS) \
		-max_len=8192 -artifact_prefix=$(FUZZ_BUILD)/ \
		$(FUZZ_BUILD)/corpus tests/fuzz/corpus tests/fuzz/regress

style:
	@clang-format --dry-run --Werror core/*.c core/*.h tests/unit/*.c

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
bench: deps $(BUILD)/skald $(BUILD)/skald-bench $(BUILD)/skald-mock
	/usr/bin/python3 bench/run.py --build $(BUILD) $(if $(filter 1,\
		$(BENCH_QUICK)),--quick --out $(BUILD)/RESULTS-quick.md,\
		--out bench/RESULTS.md)

clean:
	rm -rf build

# Test objects too: a stale harness.o after a change to struct sk_broker
# crashes test_requests.
-include $(CORE_OBJS:.o=.d) $(BUILD)/core/main.d \
	$(BUILD)/tests/fuzz/harness.d $(UNIT_BINS:=.d)
