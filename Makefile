# sluice — the only entry point: build, test, run, install.
#   make            build every binary into $(BUILD)/
#   make test       unit tests (cmocka) and integration tests against real
#                   redis-server and sluice-devbroker
#   make chaos      the fault suite: processes killed under load (tests/chaos/)
#   make run        start the whole local stack and show a pipeline run
#   make asan       the tests under AddressSanitizer + UBSan
#   make valgrind   integration tests with the sluice binaries under memcheck
#   make fuzz       each libFuzzer target (tests/fuzz/) for FUZZ_SECONDS
#   make deps       install missing Debian packages (root) or print the command

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc

PKGS = libevent libevent_openssl hiredis rdkafka libcurl openssl jansson yaml-0.1
TEST_PKGS = cmocka
# The agent's allocator (see AGENT_LDLIBS).
MALLOC_PKG = jemalloc

DEB_BUILD = build-essential pkg-config libevent-dev libhiredis-dev librdkafka-dev \
	libcurl4-openssl-dev libssl-dev libjansson-dev libyaml-dev \
	libcmocka-dev libjemalloc-dev
DEB_RUN   = redis-server git curl openssl python3 python3-pytest systemd
# promtool (only in Debian's prometheus package, ~19 MB) checks /metrics in the
# tests; groff and man render the man pages. On a host that boots with systemd
# the package also enables a Prometheus server on :9090: disable it if unwanted.
# chromium runs the dashboard's browser test (tests/browser/, driven by
# playwright-core from the npm registry with Node.js >= 20). The haproxy
# provider's tests drive a real haproxy through its runtime API. The example
# deployment's tests read its pipeline file with python3-yaml. luac5.1
# lists the globals each Lua script reads (tests/integration/test_lua_scripts.py).
# pytest-xdist runs the integration test files TEST_JOBS at a time.
DEB_TEST  = prometheus groff-base man-db chromium haproxy umoci skopeo docker-registry \
	python3-yaml lua5.1 python3-pytest-xdist
DEB_BENCH = wrk webhook
DEB_LINT  = clang-format clang-tidy cppcheck
DEB_FUZZ  = clang libclang-rt-dev

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE $(WARN) -I. -I$(BUILD)/gen \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
override LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
TEST_LDLIBS = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
# The agent allocates and frees about two hundred small blocks per webhook
# (libevent's header copies, hiredis's reply objects, librdkafka's
# messages); jemalloc's per-thread caches take about a sixth off its CPU per
# accepted webhook against glibc's malloc (bench/intake.py). Not under the
# sanitizers, which bring an allocator of their own.
AGENT_LDLIBS = $(if $(findstring -fsanitize,$(LDFLAGS)),,$(shell pkg-config --libs $(MALLOC_PKG) 2>/dev/null))

LIB_SRC = $(wildcard lib/*.c config/*.c queue/*.c stages/*.c)
LUA_SRC = $(wildcard queue/scripts/*.lua)
LUA_LIB = $(wildcard queue/scripts/lib/*.lua)
# One object per script (tools/embed-lua.sh), so that each binary links only
# the scripts it runs; lua_all, every script, only the agent's.
LUA_OBJ = $(LUA_SRC:queue/scripts/%.lua=$(BUILD)/gen/lua/%.o) $(BUILD)/gen/lua/all.o
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(LUA_OBJ)

# The dashboard's files, compiled into the agent (tools/embed-web.sh).
WEB_SRC = $(sort $(wildcard agent/web/*))
WEB_GEN = $(BUILD)/gen/web_assets.c
AGENT_OBJ  = $(patsubst %.c,$(BUILD)/%.o,$(wildcard agent/*.c)) $(BUILD)/gen/web_assets.o
WORKER_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard workers/*.c))
CTL_OBJ    = $(patsubst %.c,$(BUILD)/%.o,$(wildcard ctl/*.c))
BROKER_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard queue/devbroker/*.c))
# sluice-registry shows times and registry text as sluicectl does (ctl/fmt).
REGISTRY_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard registry/*.c)) $(BUILD)/ctl/fmt.o

BINS = $(BUILD)/sluice-agent $(BUILD)/sluice-worker $(BUILD)/sluicectl \
	$(BUILD)/sluice-devbroker $(BUILD)/sluice-registry

UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Programs that integration tests drive, built like the unit tests.
TEST_TOOLS = $(BUILD)/tests/analysis_run

# Objects of the agent and worker other than main.c are linked into the unit
# tests so that each module can be tested where it lives.
AGENT_LIB_OBJ  = $(filter-out $(BUILD)/agent/main.o,$(AGENT_OBJ))
WORKER_LIB_OBJ = $(filter-out $(BUILD)/workers/main.o $(CURLLOAD_OBJ),$(WORKER_OBJ))
# The worker opens libcurl when a stage first needs it (workers/curlload.h),
# so it is linked without it; everything else links libcurl itself.
CURLLOAD_OBJ   = $(BUILD)/workers/curlload.o
WORKER_LDLIBS  = $(filter-out -lcurl,$(LDLIBS))

.PHONY: all test unit integration chaos run asan valgrind lint format bench bench-logmask install clean deps \
	deps-bench deps-fuzz deps-valgrind fuzz check-pkgs
.DEFAULT_GOAL := all

all: check-pkgs $(BINS)

check-pkgs:
	@pkg-config --exists $(PKGS) $(TEST_PKGS) $(MALLOC_PKG) || { \
	  echo "missing development packages: run 'make deps'"; exit 1; }

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/gen/lua/%.c: queue/scripts/%.lua $(LUA_LIB) tools/embed-lua.sh
	@mkdir -p $(dir $@)
	sh tools/embed-lua.sh $< > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/lua/all.c: $(LUA_SRC) tools/embed-lua.sh
	@mkdir -p $(dir $@)
	sh tools/embed-lua.sh --all $(LUA_SRC) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/lua/%.o: $(BUILD)/gen/lua/%.c
	$(CC) $(CFLAGS) -c -o $@ $<

# Kept: the tests read the scripts as embedded (tests/harness.py).
.PRECIOUS: $(BUILD)/gen/lua/%.c

$(WEB_GEN): $(WEB_SRC) tools/embed-web.sh
	@mkdir -p $(dir $@)
	sh tools/embed-web.sh $(WEB_SRC) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/web_assets.o: $(WEB_GEN)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libsluice.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/sluice-agent: $(AGENT_OBJ) $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(AGENT_LDLIBS)
$(BUILD)/sluice-worker: $(WORKER_OBJ) $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(WORKER_LDLIBS)
$(BUILD)/sluicectl: $(CTL_OBJ) $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/sluice-devbroker: $(BROKER_OBJ) $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/sluice-registry: $(REGISTRY_OBJ) $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A test compiled and linked in one step still lists what it includes (some
# include the .c files under test), so that changing one rebuilds it; those
# files join its prerequisites, so the command names its inputs itself.
LINK_DEPS = -MMD -MP -MT $@ -MF $@.d
LINK_INPUTS = $< $(filter %.o %.a,$^)

$(BUILD)/tests/%: tests/unit/%.c $(AGENT_LIB_OBJ) $(WORKER_LIB_OBJ) $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LINK_DEPS) $(LDFLAGS) -o $@ $(LINK_INPUTS) $(LDLIBS) $(TEST_LDLIBS)

# The devbroker's snprintf replaces the process's own: its test links nothing
# else of sluice, and the compiler must not answer for snprintf itself.
$(BUILD)/tests/test_member_ids: tests/unit/test_member_ids.c $(BUILD)/queue/devbroker/member_ids.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LINK_DEPS) -fno-builtin $(LDFLAGS) -o $@ $(LINK_INPUTS) $(TEST_LDLIBS)

# The loader's test links it as the worker does: without libcurl.
$(BUILD)/tests/test_curlload: tests/unit/test_curlload.c $(CURLLOAD_OBJ) $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LINK_DEPS) $(LDFLAGS) -o $@ $(LINK_INPUTS) $(WORKER_LDLIBS) $(TEST_LDLIBS)
# ... and built to look for a library that is not there.
$(BUILD)/tests/test_curlload_absent: tests/unit/test_curlload_absent.c workers/curlload.c $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LINK_DEPS) '-DCURLLOAD_LIBRARY="libcurl-absent.so.4"' $(LDFLAGS) -o $@ \
		$< workers/curlload.c $(BUILD)/libsluice.a $(WORKER_LDLIBS) $(TEST_LDLIBS)

# --- tests ----------------------------------------------------------------

unit: check-pkgs $(UNIT_BINS)
	@sh tests/run-unit.sh $(UNIT_BINS)

# Integration test files run TEST_JOBS at a time, each file's tests in one
# process (they share its stack); most of their time is spent waiting.
TEST_JOBS ?= 2
PYTEST_JOBS = -n $(TEST_JOBS) --dist loadfile

integration: all $(TEST_TOOLS)
	SLUICE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	  $(PYTEST_JOBS) tests/integration

# The fault suite (tests/chaos): agent, workers, Kafka and Redis killed under
# load; a few minutes, so apart from make test (and from make asan).
chaos: all
	SLUICE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/chaos

# The browser test's one package, as package-lock.json pins it.
BROWSER_DEPS = tests/browser/node_modules/.package-lock.json

test: deps $(BROWSER_DEPS)
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(TEST_TOOLS)
	@PYTEST_JOBS="$(PYTEST_JOBS)" sh tests/run-all.sh $(BUILD) $(UNIT_BINS)

$(BROWSER_DEPS): tests/browser/package.json tests/browser/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js >= 20) is needed for tests/browser"; exit 1; }
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" test

# A subset of the integration tests (tests/run-valgrind.py says which and
# why) with every agent, worker and devbroker under memcheck; fails on any
# memcheck error or block definitely lost. VALGRIND_TESTS=... picks others,
# so the programs the integration tests drive are built too.
valgrind: deps deps-valgrind all $(TEST_TOOLS)
	@/usr/bin/python3 tests/run-valgrind.py $(BUILD) $(VALGRIND_TESTS)

# Fuzzing: clang builds the library with ASan + UBSan and coverage for
# libFuzzer; tests/fuzz/run.sh runs each target with its seeds and
# dictionary and fails on the first crash, leak or sanitizer report.
FUZZ_SECONDS ?= 60
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS = $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/fuzz/%)
FUZZ_SAN  = -fsanitize=address,undefined -fno-sanitize-recover=all

fuzz: deps-fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  LDFLAGS="$(FUZZ_SAN)" $(FUZZ_BINS)
	@sh tests/fuzz/run.sh build-fuzz/fuzz $(FUZZ_SECONDS)

deps-fuzz:
	@sh tools/deps.sh $(DEB_FUZZ)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/agent/github.o $(BUILD)/agent/signature.o \
		$(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LINK_DEPS) $(LDFLAGS) -fsanitize=fuzzer -o $@ $(LINK_INPUTS) $(LDLIBS)

# --- running --------------------------------------------------------------

run: deps all
	@sh tools/run-local.sh $(BUILD)

bench: deps deps-bench all
	@sh bench/run.sh $(BUILD)

# What masking costs a log line, by the secrets masked (figures only).
bench-logmask: $(BUILD)/bench/logmask
	@$(BUILD)/bench/logmask
$(BUILD)/bench/logmask: bench/logmask.c $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# --- housekeeping ---------------------------------------------------------

SRC_ALL = $(shell find lib config queue stages agent workers ctl registry tests/unit tests/fuzz bench -name '*.[ch]')

format:
	clang-format -i $(SRC_ALL)

lint:
	clang-format --dry-run --Werror $(SRC_ALL)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --suppress=missingIncludeSystem --inline-suppr -I. $(SRC_ALL)

# Units name the installed binaries: @BINDIR@ and @DOCDIR@ are filled in
# here, so that `systemd-analyze verify` finds what ExecStart= names.
UNITS = systemd/sluice-agent.service systemd/sluice-worker@.service systemd/sluice.target \
	systemd/sluice-registry-lifecycle.service systemd/sluice-registry-lifecycle.timer
UNITDIR = $(PREFIX)/lib/systemd/system
# Man pages: @PREFIX@ is filled in like the units' paths.
MANS = man/sluicectl.1 man/sluice.yaml.5 man/sluice-agent.8 man/sluice-worker.8 \
	man/sluice-registry.8
MANDIR = $(PREFIX)/share/man

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/share/doc/sluice \
	  $(DESTDIR)$(PREFIX)/share/sluice/examples $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	for u in $(UNITS); do \
	  sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@DOCDIR@|$(PREFIX)/share/doc/sluice|g' \
	    "$$u" > "$(DESTDIR)$(UNITDIR)/$${u#systemd/}" && \
	  chmod 644 "$(DESTDIR)$(UNITDIR)/$${u#systemd/}" || exit 1; done
	install -m 644 systemd/sluice.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/sluice.conf
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/sluice/
	install -d $(DESTDIR)$(PREFIX)/share/doc/sluice/docs
	install -m 644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/sluice/docs/
	cp -R config/examples/. $(DESTDIR)$(PREFIX)/share/sluice/examples/
	for m in $(MANS); do \
	  dest="$(DESTDIR)$(MANDIR)/man$${m##*.}/$${m#man/}" && \
	  sed -e 's|@PREFIX@|$(PREFIX)|g' "$$m" > "$$dest" && chmod 644 "$$dest" || exit 1; done

clean:
	rm -rf build build-asan build-fuzz

deps:
	@sh tools/deps.sh $(DEB_BUILD) $(DEB_RUN) $(DEB_TEST)

deps-bench:
	@sh tools/deps.sh $(DEB_BENCH)

deps-valgrind:
	@sh tools/deps.sh valgrind

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
