# infonchat-runtime: one GNU Makefile, pkg-config, no autoconf.
#
#   make                  build bin/*
#   make check            every test: unit, integration (own PostgreSQL), docs,
#                         then the unit and integration tests again under
#                         AddressSanitizer + UndefinedBehaviorSanitizer
#   make run              the whole service on a local PostgreSQL under ./var
#   make SANITIZER=address,undefined    a sanitizer build into build/san
#   make CRASHPOINTS=1    the fault tests' build (crash points live) into build/crash
#   make install PREFIX=/usr/local DESTDIR=

PREFIX   ?= /usr/local
DESTDIR  ?=
VERSION  := 0.1.0
PKGS     := libevent libzmq libpq libcjson libcrypto
CC       ?= cc

WARN     := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wvla -Wno-format-nonliteral
CFLAGS   ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -DINFONCHAT_VERSION='"$(VERSION)"' -Icommon
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

ifdef CRASHPOINTS
# The fault tests' build: CRASH_POINT() places are live (common/crashpoint.h).
BUILD    := build/crash
BIN      := build/crash/bin
CPPFLAGS += -DINFONCHAT_CRASH_POINTS
else ifdef SANITIZER
BUILD    := build/san
BIN      := build/san/bin
CFLAGS   += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZER)
else
BUILD    := build/default
BIN      := bin
endif

STAGES   := $(notdir $(wildcard cmd/*))
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
LIBCOMMON  := $(BUILD)/libcommon.a
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.SECONDARY:
.PHONY: all deps soak bench-tools fuzz check-fuzz check check-unit check-integration check-faults check-docs check-san \
        run stop install clean bench bench-scaling
.DEFAULT_GOAL := all

all: $(STAGES:%=$(BIN)/%)

deps:
	@scripts/deps

$(BUILD)/%.o: %.c $(wildcard common/*.h) $(wildcard cmd/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(WARN) $(CFLAGS) -c $< -o $@

$(LIBCOMMON): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	@$(AR) rcs $@ $^

.SECONDEXPANSION:
$(BIN)/%: $$(addprefix $(BUILD)/,$$(addsuffix .o,$$(basename $$(wildcard cmd/$$*/*.c)))) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(CC) $(LDFLAGS) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/unit/%.o: CPPFLAGS += -Itests/unit

# Fuzz targets: replayed over their corpus in `make check` (any compiler);
# `make fuzz` runs them under libFuzzer (clang) for FUZZ_SECONDS each.
FUZZ_TARGETS := fuzz_body fuzz_envelope
FUZZ_REPLAY  := $(FUZZ_TARGETS:%=$(BUILD)/tests/%)
FUZZ_SECONDS ?= 60
$(BUILD)/tests/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(CC) $(LDFLAGS) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

check-fuzz: $(FUZZ_REPLAY)
	@$(BUILD)/tests/fuzz_body tests/fuzz/corpus/body tests/data/jsontestsuite/test_parsing
	@$(BUILD)/tests/fuzz_envelope tests/fuzz/corpus/envelope tests/data/jsontestsuite/test_parsing

fuzz:
	@mkdir -p build/fuzz/corpus-body build/fuzz/corpus-envelope
	@for t in $(FUZZ_TARGETS); do \
	    clang $(CPPFLAGS) $(PKG_CFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined \
	        tests/fuzz/$$t.c $(COMMON_SRC) -o build/fuzz/$$t $(PKG_LIBS) || exit 1; \
	done
	build/fuzz/fuzz_body -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    build/fuzz/corpus-body tests/fuzz/corpus/body tests/data/jsontestsuite/test_parsing
	build/fuzz/fuzz_envelope -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    build/fuzz/corpus-envelope tests/fuzz/corpus/envelope

# --- tests -------------------------------------------------------------------

PYTHON ?= /usr/bin/python3

check: deps
	@$(MAKE) --no-print-directory all
	@tests/run-all

check-unit: $(UNIT_BIN)
	@tests/run-unit $(UNIT_BIN)
	@$(MAKE) --no-print-directory check-fuzz

check-integration: all
	@INFONCHAT_BIN=$(CURDIR)/$(BIN) $(PYTHON) tests/integration/run.py

# The fault-injection suite (tests/faults/README) against the crash-point
# build; FAULT_SECONDS=600 for a longer run.
check-faults:
	@$(MAKE) --no-print-directory CRASHPOINTS=1 all
	@INFONCHAT_BIN=$(CURDIR)/build/crash/bin $(PYTHON) tests/faults/run.py

check-docs:
	@tests/check-docs

# --- benchmarks --------------------------------------------------------------

$(BUILD)/bench/loadgen: bench/loadgen.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(filter-out -Wmissing-prototypes,$(WARN)) $(CFLAGS) -o $@ $< $(PKG_LIBS)

bench-tools: $(BUILD)/bench/loadgen

# The end-to-end benchmark (bench/run, bench/README.md): its own PostgreSQL,
# the five stages and an nginx ceiling; wrk closed loop (keep-alive and a new
# connection per request) and bench/loadgen fixed rates; one table, and
# bench/results/<UTC>/ with the raw data and a plot. About 9 minutes.
# Knobs (make variables or environment): BENCH_SECONDS (10 a step),
# BENCH_CONNS ("16 64 256"), BENCH_RATES ("1000 2500 5000 7500 10000 12500"),
# BENCH_FIXED_CONNS (64), BENCH_AGENTS (1), BENCH_CLOSE_RATES (""),
# BENCH_INGEST_CONNS ("64 256 1024"); a list set empty skips its steps.
bench: deps all bench-tools
	@bench/run

# Scaling curves (bench/scaling): throughput and CPU per event against
# inbox-workers, batch limits, payload size and matching agents. About 9
# minutes; SCALING_SWEEPS="workers batch payload agents", SCALING_CONNS (64).
bench-scaling: deps all bench-tools
	@bench/scaling

# Memory of every stage under steady load (SOAK_MINUTES, default 10).
SOAK_MINUTES ?= 10
soak: deps all bench-tools
	@bench/soak $(SOAK_MINUTES)

# --- operations --------------------------------------------------------------

run: deps all
	@scripts/run-local

stop:
	@scripts/run-local stop

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man7 $(DESTDIR)$(PREFIX)/share/infonchat/sql
	install -m 755 $(STAGES:%=$(BIN)/%) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/man7/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/
	install -m 644 sql/*.sql $(DESTDIR)$(PREFIX)/share/infonchat/sql/
	install -m 755 scripts/migrate $(DESTDIR)$(PREFIX)/bin/infonchat-migrate
	@# service directories: share/infonchat/{s6,runit}/<stage>/ (see their README)
	for sup in s6 runit; do \
	    install -d $(DESTDIR)$(PREFIX)/share/infonchat/$$sup && \
	    install -m 644 scripts/$$sup/README $(DESTDIR)$(PREFIX)/share/infonchat/$$sup/ || exit 1; \
	    for s in $(STAGES); do \
	        d=$(DESTDIR)$(PREFIX)/share/infonchat/$$sup/$$s; \
	        install -d $$d/log || exit 1; \
	        for f in run finish check; do \
	            [ ! -f scripts/$$sup/$$s/$$f ] || install -m 755 scripts/$$sup/$$s/$$f $$d/ || exit 1; \
	        done; \
	        [ ! -f scripts/$$sup/$$s/notification-fd ] || \
	            install -m 644 scripts/$$sup/$$s/notification-fd $$d/ || exit 1; \
	        install -m 755 scripts/$$sup/$$s/log/run $$d/log/ || exit 1; \
	    done; \
	done

clean:
	rm -rf bin build
