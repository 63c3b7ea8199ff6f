# mod_offload -- build, install, test, demo.
#
#   make              build mod_offload.so (apxs) and offload_daemon
#   make test         install missing Debian packages, build, run every test
#   make demo         a private base server + offload daemon on 127.0.0.1
#   make install      install both (DESTDIR, PREFIX honoured)
#   make deb          Debian packages of both (see docs/operations.md)
#   make bench        the benchmark suite against nginx (see docs/benchmarks.md)
#   make bench-report docs/benchmarks.md and its plots from the last results
#   make fuzz         libFuzzer targets in tests/fuzz: regressions, then
#                     FUZZ_SECONDS (default 60) of fuzzing each
#   make valgrind     the daemon's unit tests under valgrind's memcheck
#   make test SANITIZE=1   the same suite against an ASan+UBSan daemon

APXS     ?= apxs
CC       ?= cc
PYTHON   ?= /usr/bin/python3
PREFIX   ?= /usr/local
DESTDIR  ?=
OPTFLAGS ?= -O2 -g
WARNFLAGS = -Wall -Wextra
CFLAGS   ?=
CPPFLAGS ?=
LDFLAGS  ?=

# SANITIZE=1 builds the daemon and its unit tests with ASan and UBSan.
# ASan reports go to files under SAN_LOG_DIR (forked and daemonized
# processes included, whose stderr may be /dev/null); make test fails if
# any was written. UBSan, combined with ASan by gcc, ignores log_path and
# reports on stderr: the harness sends a daemon's stderr to its log in the
# test's run directory, which conftest checks for "runtime error:", and
# make test greps every log of the run for it again. Children that
# _exit() skip the leak check, so leaks are not checked in the integration
# run (make valgrind does that).
SAN_LOG_DIR = .run/sanitizer
ifeq ($(SANITIZE),1)
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer
SAN_ENV  = ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$(CURDIR)/$(SAN_LOG_DIR)/asan \
           UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/$(SAN_LOG_DIR)/ubsan
SAN_RUN_ROOT = $(shell $(PYTHON) -c 'import sys; sys.path.insert(0, "tests"); \
                 import harness; print(harness.RUN_ROOT)')
endif

DAEMON_CFLAGS = -std=gnu11 $(OPTFLAGS) $(WARNFLAGS) $(SANFLAGS) $(CPPFLAGS) $(CFLAGS)
DAEMON_LIBS   = -lz -lcrypto
# Symbols bound at start: children then never write to the GOT, which
# keeps those pages shared with the parent (memory per download).
DAEMON_LDFLAGS = -Wl,-z,now -Wl,-z,relro

# The flags the daemon was last built with: a change (SANITIZE=1 or not)
# rebuilds it and the unit tests.
FLAGS_STAMP = .run/build-flags

# libFuzzer (clang only). Each target in tests/fuzz/fuzz_NAME.c has a seed
# corpus in tests/fuzz/corpus/NAME/ and reproducers of fixed crashes in
# tests/fuzz/regress/NAME/; what fuzzing adds goes to .run/fuzz/NAME/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = request range base_response config path meta module
FUZZ_FLAGS    = -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
                -Wno-unused-function -I.
FUZZ_OUT      = .run/fuzz
# fuzz_module includes mod_offload.c: APR and httpd headers, APR libraries,
# and stubs for the httpd functions outside the directive parsers.
FUZZ_APR_CFLAGS = -I$(shell $(APXS) -q INCLUDEDIR) \
                  $(shell apr-1-config --includes --cppflags)
FUZZ_APR_LIBS   = $(shell apr-1-config --link-ld) $(shell apu-1-config --link-ld) -lm
FUZZ_BINS     = $(FUZZ_TARGETS:%=$(FUZZ_OUT)/fuzz_%)

VALGRIND      ?= valgrind
VALGRIND_UNIT  = .run/valgrind/unit_daemon

MODULE   = .libs/mod_offload.so
DAEMON   = offload_daemon
UNIT     = tests/unit_daemon

# Debian packages for building and testing; bench adds its own.
DEPS_PACKAGES = gcc make apache2 apache2-dev zlib1g-dev libssl-dev curl python3 \
                python3-pytest aria2 build-essential debhelper dpkg-dev \
                fakeroot lintian man-db adduser
BENCH_PACKAGES = nginx-light wrk gnuplot-nox apache2-utils

# Debian packages (make deb): built with dpkg-buildpackage in DEB_TREE, a
# copy of these sources with dist/debian as debian/, so that the top level
# has no debian/; the two .deb files are copied to DEB_OUT, then checked
# with lintian (an error fails the build). The version is OFFLOAD_VERSION
# in config.h, which must be the latest entry of dist/debian/changelog.
# The build gets none of this make's variables (SANITIZE=1, CFLAGS=...)
# nor the environment but PATH, HOME and DEB_BUILD_OPTIONS: Debian's
# build flags only.
VERSION     = $(shell sed -n 's/^\#define OFFLOAD_VERSION "\(.*\)"$$/\1/p' config.h)
DEB_BUILD  ?= .run/deb
DEB_OUT    ?= .
DEB_TREE    = $(DEB_BUILD)/mod-offload-$(VERSION)
DEB_SOURCES = Makefile config.h mod_offload.c offload_daemon.c LICENSE.txt \
              README.md tests/unit_daemon.c $(wildcard dist/offload* docs/*.md)
DEB_FILES   = libapache2-mod-offload_$(VERSION)_$(DEB_ARCH).deb \
              offload-daemon_$(VERSION)_$(DEB_ARCH).deb
DEB_ARCH    = $(shell dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)
LINTIAN    ?= lintian

PYTEST_ARGS ?=
TEST_PATHS ?= tests
# After the whole suite, `make test` runs these again against a daemon
# built with ASan and UBSan (SANITIZED_SUBSET= skips it; `make test
# SANITIZE=1` runs everything that way).
SANITIZED_SUBSET ?= tests/test_hardening.py tests/test_faults.py

.PHONY: all install test unit demo clean deps bench-deps bench bench-report \
        fuzz fuzz-build fuzz-regress valgrind deb FORCE

all: $(MODULE) $(DAEMON)

$(MODULE): mod_offload.c config.h
	$(APXS) -S CC="$(CC)" -c -Wc,-Wall -Wc,-Wextra -Wc,-std=gnu11 \
	    -o mod_offload.la mod_offload.c -lm

$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(DAEMON_CFLAGS)' | cmp -s - $@ || \
	    echo '$(CC) $(DAEMON_CFLAGS)' >$@

$(DAEMON): offload_daemon.c config.h $(FLAGS_STAMP)
	$(CC) $(DAEMON_CFLAGS) -o $@ offload_daemon.c $(DAEMON_LDFLAGS) $(LDFLAGS) \
	    $(DAEMON_LIBS)

$(UNIT): tests/unit_daemon.c offload_daemon.c config.h $(FLAGS_STAMP)
	$(CC) $(DAEMON_CFLAGS) -Wno-unused-function -I. -o $@ tests/unit_daemon.c \
	    $(LDFLAGS) $(DAEMON_LIBS)

unit: $(UNIT)
	./$(UNIT)

test: deps all $(UNIT)
	rm -rf $(SAN_LOG_DIR) && mkdir -p $(SAN_LOG_DIR) && touch $(SAN_LOG_DIR).start
	$(SAN_ENV) ./$(UNIT)
	$(SAN_ENV) $(PYTHON) -m pytest -ra $(PYTEST_ARGS) $(TEST_PATHS)
	@if [ -n "$$(ls -A $(SAN_LOG_DIR))" ]; then \
	    echo "sanitizer reports in $(SAN_LOG_DIR):"; \
	    cat $(SAN_LOG_DIR)/*; exit 1; fi
	@if [ -n "$(SAN_RUN_ROOT)" ] && find $(SAN_RUN_ROOT)/tests -name '*.log' \
	    -newer $(SAN_LOG_DIR).start -exec grep -lE \
	    'runtime error:|AddressSanitizer|LeakSanitizer' {} + | grep .; then \
	    echo "sanitizer reports in the logs above"; exit 1; fi
ifneq ($(SANITIZE),1)
ifneq ($(SANITIZED_SUBSET),)
	@echo "again against an ASan+UBSan daemon: $(SANITIZED_SUBSET)"
	$(MAKE) SANITIZE=1 TEST_PATHS="$(SANITIZED_SUBSET)" test
	$(MAKE) $(DAEMON)
endif
endif

demo: deps all
	$(PYTHON) tests/demo.py $(if $(DEMO_ONESHOT),--oneshot)

install: all
	install -d "$(DESTDIR)$$($(APXS) -q LIBEXECDIR)"
	$(APXS) -S LIBEXECDIR="$(DESTDIR)$$($(APXS) -q LIBEXECDIR)" -i -n offload mod_offload.la
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
	    $(DESTDIR)/etc/offload
	install -m 755 $(DAEMON) $(DESTDIR)$(PREFIX)/sbin/offload_daemon
	if [ -f dist/offload_daemon.8 ]; then \
	    install -m 644 dist/offload_daemon.8 $(DESTDIR)$(PREFIX)/share/man/man8/; fi
	if [ -f dist/offload_daemon.conf ]; then \
	    install -m 644 dist/offload_daemon.conf $(DESTDIR)/etc/offload/offload_daemon.conf.sample; fi
	install -d $(DESTDIR)/etc/init.d $(DESTDIR)/etc/logrotate.d \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' dist/offload_daemon.init \
	    >$(DESTDIR)/etc/init.d/offload_daemon
	chmod 755 $(DESTDIR)/etc/init.d/offload_daemon
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' dist/offload_daemon.service \
	    >$(DESTDIR)$(PREFIX)/lib/systemd/system/offload_daemon.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/offload_daemon.service
	install -m 644 dist/offload_daemon.logrotate $(DESTDIR)/etc/logrotate.d/offload_daemon

deb:
	@v=$$(dpkg-parsechangelog -l dist/debian/changelog -S Version); \
	if [ "$$v" != "$(VERSION)" ]; then \
	    echo "dist/debian/changelog is at $$v, config.h's OFFLOAD_VERSION" \
	        "at $(VERSION): add a changelog entry for $(VERSION)"; exit 1; fi
	rm -rf $(DEB_TREE) $(DEB_BUILD)/*.deb $(DEB_BUILD)/*.changes \
	    $(DEB_BUILD)/*.buildinfo && mkdir -p $(DEB_TREE)
	cp --parents $(DEB_SOURCES) $(DEB_TREE)/
	cp -R dist/debian $(DEB_TREE)/debian
	cd $(DEB_TREE) && env -i PATH="$$PATH" HOME="$$HOME" \
	    DEB_BUILD_OPTIONS="$$DEB_BUILD_OPTIONS" dpkg-buildpackage -b -us -uc
	mkdir -p $(DEB_OUT)
	cp $(addprefix $(DEB_BUILD)/,$(DEB_FILES)) $(DEB_OUT)/
	$(LINTIAN) --fail-on error $(addprefix $(DEB_OUT)/,$(DEB_FILES))

# Fuzzing: build every target, run the reproducers in tests/fuzz/regress
# and the seed corpus once (any crash fails), then fuzz each target for
# FUZZ_SECONDS. A crash is saved as .run/fuzz/crash-NAME-*: copy it to
# tests/fuzz/regress/NAME/ once the bug is fixed. The last line of each
# target's log (.run/fuzz/NAME.log) has its executions and coverage.
$(FUZZ_OUT)/fuzz_%: tests/fuzz/fuzz_%.c offload_daemon.c config.h
	@mkdir -p $(FUZZ_OUT)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(DAEMON_LIBS)

$(FUZZ_OUT)/fuzz_module: tests/fuzz/fuzz_module.c \
        tests/fuzz/fuzz_module_stubs.c mod_offload.c config.h
	@mkdir -p $(FUZZ_OUT)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_APR_CFLAGS) -o $@ tests/fuzz/fuzz_module.c \
	    tests/fuzz/fuzz_module_stubs.c $(FUZZ_APR_LIBS)

fuzz-build: $(FUZZ_BINS)

# A reproducer named open-* is a bug not fixed yet: it must still crash
# (as a strict xfail would); rename it once the fix makes it pass.
fuzz-regress: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p tests/fuzz/regress/$$t; \
	    echo "fuzz-regress $$t"; \
	    for f in tests/fuzz/regress/$$t/*; do \
	        [ -f "$$f" ] || continue; \
	        if $(FUZZ_OUT)/fuzz_$$t -timeout=10 "$$f" \
	            >$(FUZZ_OUT)/$$t-regress.log 2>&1; then \
	            case "$${f##*/}" in open-*) \
	                echo "$$f passes now: rename it without open-"; \
	                exit 1;; esac; \
	        else \
	            case "$${f##*/}" in open-*) \
	                echo "  known open bug: $$f";; \
	            *) tail -n 40 $(FUZZ_OUT)/$$t-regress.log; exit 1;; esac; \
	        fi; \
	    done; \
	    $(FUZZ_OUT)/fuzz_$$t -runs=0 -timeout=10 tests/fuzz/corpus/$$t \
	        >$(FUZZ_OUT)/$$t-regress.log 2>&1 || \
	        { tail -n 40 $(FUZZ_OUT)/$$t-regress.log; exit 1; }; \
	done

fuzz: fuzz-regress
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_OUT)/$$t; \
	    echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
	    if $(FUZZ_OUT)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_OUT)/crash-$$t- \
	        $(FUZZ_OUT)/$$t tests/fuzz/corpus/$$t \
	        >$(FUZZ_OUT)/$$t.log 2>&1; then \
	        grep -E '^#[0-9]+.*DONE' $(FUZZ_OUT)/$$t.log | tail -n 1; \
	    else \
	        fail=1; grep -E 'ERROR|SUMMARY|Test unit written' \
	            $(FUZZ_OUT)/$$t.log; \
	    fi; \
	done; exit $$fail

# memcheck over the unit tests, built without sanitizers (valgrind and
# ASan do not mix): no errors, no leaks.
$(VALGRIND_UNIT): tests/unit_daemon.c offload_daemon.c config.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O1 -g $(WARNFLAGS) -Wno-unused-function -I. -o $@ \
	    tests/unit_daemon.c $(LDFLAGS) $(DAEMON_LIBS)

valgrind: $(VALGRIND_UNIT)
	$(VALGRIND) --tool=memcheck --error-exitcode=1 --leak-check=full \
	    --show-leak-kinds=definite,indirect,possible \
	    --errors-for-leak-kinds=definite,indirect,possible \
	    ./$(VALGRIND_UNIT)

# Installs what is missing when run as root; otherwise says what to run.
deps:
	@$(SHELL) tests/deps.sh $(DEPS_PACKAGES)

bench-deps:
	@$(SHELL) tests/deps.sh $(DEPS_PACKAGES) $(BENCH_PACKAGES)

bench: bench-deps all
	$(PYTHON) bench/run.py $(if $(QUICK),--quick)

# docs/benchmarks.md and docs/img/ again from the last results file.
bench-report:
	$(PYTHON) bench/report.py

clean:
	rm -rf .libs *.la *.lo *.slo *.o $(DAEMON) $(UNIT) tests/__pycache__ \
	    bench/__pycache__ .run libapache2-mod-offload_*.deb \
	    offload-daemon_*.deb
