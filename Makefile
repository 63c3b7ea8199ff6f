# mod_offload -- build, install, test, demo.
#
#   make              build mod_offload.so (apxs) and offload_daemon
#   make test         install missing Debian packages, build, run every test
#   make demo         a private base server + offload daemon on 127.0.0.1
#   make install      install both (DESTDIR, PREFIX honoured)
#   make bench        the benchmark suite against nginx (see docs/benchmarks.md)

APXS     ?= apxs
CC       ?= cc
PYTHON   ?= /usr/bin/python3
PREFIX   ?= /usr/local
DESTDIR  ?=
OPTFLAGS ?= -O2 -g
WARNFLAGS = -Wall -Wextra
CFLAGS   ?=
LDFLAGS  ?=

# SANITIZE=1 builds the daemon and its unit tests with ASan and UBSan.
ifeq ($(SANITIZE),1)
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer
endif

DAEMON_CFLAGS = -std=gnu11 $(OPTFLAGS) $(WARNFLAGS) $(SANFLAGS) $(CFLAGS)
DAEMON_LIBS   = -lz

MODULE   = .libs/mod_offload.so
DAEMON   = offload_daemon
UNIT     = tests/unit_daemon

# Debian packages for building and testing; bench adds its own.
DEPS_PACKAGES = gcc make apache2 apache2-dev zlib1g-dev curl python3 \
                python3-pytest aria2
BENCH_PACKAGES = nginx-light wrk gnuplot-nox apache2-utils

PYTEST_ARGS ?=

.PHONY: all install test unit demo clean deps bench-deps bench

all: $(MODULE) $(DAEMON)

$(MODULE): mod_offload.c config.h
	$(APXS) -S CC="$(CC)" -c -Wc,-Wall -Wc,-Wextra -Wc,-std=gnu11 \
	    -o mod_offload.la mod_offload.c -lm

$(DAEMON): offload_daemon.c config.h
	$(CC) $(DAEMON_CFLAGS) -o $@ offload_daemon.c $(LDFLAGS) $(DAEMON_LIBS)

$(UNIT): tests/unit_daemon.c offload_daemon.c config.h
	$(CC) $(DAEMON_CFLAGS) -Wno-unused-function -I. -o $@ tests/unit_daemon.c \
	    $(LDFLAGS) $(DAEMON_LIBS)

unit: $(UNIT)
	./$(UNIT)

test: deps all $(UNIT)
	./$(UNIT)
	$(PYTHON) -m pytest -ra $(PYTEST_ARGS) tests

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

# Installs what is missing when run as root; otherwise says what to run.
deps:
	@$(SHELL) tests/deps.sh $(DEPS_PACKAGES)

bench-deps:
	@$(SHELL) tests/deps.sh $(DEPS_PACKAGES) $(BENCH_PACKAGES)

bench: bench-deps all
	$(PYTHON) bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf .libs *.la *.lo *.slo *.o $(DAEMON) $(UNIT) tests/__pycache__ \
	    bench/__pycache__ .run
