# defender-alertd: `make demo` shows it working, `make test` runs every test.
SWIFT       ?= swift
PREFIX      ?= /usr
BUILD_FLAGS ?=
APT_PACKAGES = libsystemd-dev pkg-config systemd curl python3 python3-pip tinyproxy libsqlite3-dev debootstrap systemd-container
# Real third-party clients the simulator is tested against.
PIP_PACKAGES = msal requests
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BINARY       = .build/debug/defender-alertd
# Exactly the versions in the committed Package.resolved: a stale or missing pin fails the
# build instead of silently resolving newer code.
PINNED       = --force-resolved-versions
# `make demo DEMO_SECONDS=15` stops the demo with SIGINT after that long (as Ctrl-C would).
DEMO_SECONDS ?=

.PHONY: deps build test docs demo demo-test check-units systemd-test release install clean

## deps: install the Debian packages the build and the tests need, when missing
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@python3 -c "import msal, requests" 2>/dev/null || python3 -m pip install --quiet $(PIP_PACKAGES) \
		|| python3 -m pip install --quiet --break-system-packages $(PIP_PACKAGES)

## build: debug build of everything
build: deps
	$(SWIFT) build $(PINNED) $(BUILD_FLAGS)

## check-units: systemd-analyze verify + security (exposure <= 1.5) on the unit files
check-units: build
	scripts/check-units.sh $(BINARY)

## systemd-test: the shipped unit under a real systemd booted with systemd-nspawn
systemd-test: build
	scripts/systemd-integration.sh .build/debug

## test: the whole suite (unit files, real systemd, unit and integration tests with a real
## journald, end-to-end)
test: build check-units demo-test systemd-test
	scripts/with-journald.sh $(SWIFT) test $(PINNED) $(BUILD_FLAGS)

## demo: run the daemon in the foreground with config/demo.toml (Ctrl-C stops it)
demo: build
	@scripts/demo.sh .build/debug $(DEMO_SECONDS)

## demo-test: `make demo DEMO_SECONDS=15` as a person runs it, checked (exit 0, alerts in both
## sinks, no error or critical log line)
demo-test: build
	scripts/demo-check.sh

## docs: regenerate the README's configuration tables from the loader's key table
docs: build
	scripts/update-config-reference.py $(BINARY) README.md

## release: static-stdlib release binary that needs no Swift toolchain on the target
release: deps
	$(SWIFT) build $(PINNED) -c release --static-swift-stdlib

## install: binary, units and example configuration (run as root)
install: release
	install -D -s -m 0755 .build/release/defender-alertd $(DESTDIR)$(PREFIX)/bin/defender-alertd
	install -D -m 0644 systemd/defender-alertd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/defender-alertd.service
	install -D -m 0644 systemd/defender-alertd@.service $(DESTDIR)$(PREFIX)/lib/systemd/system/defender-alertd@.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/defender-alertd/README.md
	install -D -m 0644 config/defender-alertd.toml $(DESTDIR)$(PREFIX)/share/doc/defender-alertd/defender-alertd.toml.example
	@[ -e $(DESTDIR)/etc/defender-alertd/defender-alertd.toml ] || \
		install -D -m 0644 config/defender-alertd.toml $(DESTDIR)/etc/defender-alertd/defender-alertd.toml

clean:
	rm -rf .build .build-systemd .demo
