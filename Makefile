# defender-alertd: `make demo` shows it working, `make test` runs every test.
SWIFT       ?= swift
PREFIX      ?= /usr
BUILD_FLAGS ?=
# What building and running the daemon needs (all that `make demo` installs), and what the
# tests need besides.
BUILD_PACKAGES = libsystemd-dev libdeflate-dev pkg-config libsqlite3-dev python3
APT_PACKAGES = $(BUILD_PACKAGES) systemd curl python3-pip tinyproxy debootstrap systemd-container \
	rsyslog rsyslog-gnutls rsyslog-relp postgresql
# Real third-party clients the simulator is tested against, and independent parsers of what
# the syslog sink sends and the metrics endpoint shows; PyYAML and py-ocsf-models for the
# schema checks of ECS and OCSF output (Tests/Clients/validate_schemas.py).
PIP_PACKAGES = msal requests pycef syslog-rfc5424-parser prometheus-client pyyaml py-ocsf-models==0.10.0
BINARY       = .build/debug/defender-alertd
# Exactly the versions in the committed Package.resolved: a stale or missing pin fails the
# build instead of silently resolving newer code.
PINNED       = --force-resolved-versions
# The release build has a build directory of its own, so that it can compile while the parts of
# `make test` that need only the debug build run (SwiftPM locks a build directory while it builds).
RELEASE_SCRATCH = .build-release
RELEASE      = $(RELEASE_SCRATCH)/release
# The build whose daemon is packaged and installed: the release build; make test packages a
# debug build linked with the Swift runtime in it instead (package-debug).
PACKAGED     ?= $(RELEASE)
PACKAGE_DEBUG = .build/package-debug
# make test's parts run on the debug build it made first (BUILT=1): no `swift build` while
# they run. In a fresh clone every later `swift build` there compiled Hummingbird's modules
# again (30-45 s) and relinked the simulator and the test bundle that other lanes were running.
SWIFT_BUILD   = $(if $(BUILT),@echo "make: the debug build is made already (BUILT)",$(SWIFT) build $(PINNED) $(BUILD_FLAGS))
TOOLS_SCRATCH = .build-tools
GENERATE_MANUAL = $(TOOLS_SCRATCH)/debug/generate-manual
# Static Swift runtime (no toolchain on the target); symbols bound at start (full RELRO); no
# dynamic symbol table for the whole program (the static runtime's link arguments export
# every symbol, which costs memory at start and is used by nothing here). Linked by lld:
# relative relocations packed (RELR: 21 KB instead of 3.2 MB read at every start), and every
# function in its own section, laid out in the order of scripts/symbol-order.txt (the
# functions a running daemon executes, from `make symbol-order`) so that the code the daemon
# runs is contiguous and little else of the 30 MB of code is mapped (see README, Measured).
RELEASE_FLAGS = -c release --scratch-path $(RELEASE_SCRATCH) --static-swift-stdlib \
	-Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections -Xcxx -ffunction-sections \
	-Xswiftc -use-ld=lld -Xlinker -z -Xlinker now -Xlinker -z -Xlinker pack-relative-relocs \
	-Xlinker --no-export-dynamic \
	-Xlinker --symbol-ordering-file=$(CURDIR)/scripts/symbol-order.txt -Xlinker --no-warn-symbol-ordering
GENERATED    = .build/generated
UNITDIR     ?= $(PREFIX)/lib/systemd/system
VERSION      = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
ARCH         = $(shell dpkg --print-architecture)
DEB          = dist/defender-alertd_$(VERSION)_$(ARCH).deb
# Packaging tools for `make deb` (debhelper builds the package, lintian checks it).
DEB_PACKAGES = debhelper lintian dpkg-dev groff-base
# Fault injection for the reliability suite: clock jumps and failing fsync.
RELIABILITY_PACKAGES = libfaketime strace
# The benchmark driver runs on Debian's Python (matplotlib for the plot, requests for the peer).
BENCH_PACKAGES = python3-matplotlib python3-requests curl iproute2
# The image (make image): Podman builds and runs it (runc: crun refuses these hosts' cgroups);
# ca-certificates' bundle goes into it; binutils strips the daemon; xz-utils unpacks Debian's
# package index for the Quadlet generator (scripts/container-test.py).
IMAGE_PACKAGES = podman runc ca-certificates binutils xz-utils curl
IMAGE        = localhost/defender-alertd
# The image's org.opencontainers.image.source label: the repository's URL (`make image
# IMAGE_SOURCE=https://...`); by default where this clone came from.
IMAGE_SOURCE ?= $(shell git config --get remote.origin.url 2>/dev/null)
# Validators of the Kubernetes manifests (deploy/kubernetes), from PyPI: kubernetes-validate
# (the Kubernetes API's OpenAPI schemas, offline) and yamllint.
K8S_PIP_PACKAGES = kubernetes-validate==1.37.0 yamllint==1.38.0
# promtool, for the alert rules test (deps-promtool).
PROMTOOL_DIR = .build/tools/prometheus
PROMTOOL     = $(PROMTOOL_DIR)/root/usr/bin/promtool
# What debhelper leaves in debian/ while it builds the package.
DEBHELPER_FILES = debian/defender-alertd debian/.debhelper debian/debhelper-build-stamp debian/files debian/*.substvars debian/*.debhelper
# `make demo DEMO_SECONDS=15` stops the demo with SIGINT after that long (as Ctrl-C would);
# `make demo DEMO_API=graph` reads the alerts through Microsoft Graph security/alerts_v2.
DEMO_SECONDS ?=
DEMO_API ?= mde

.PHONY: image image-save image-test deps-image deploy-check format format-check deps deps-build deps-deb deps-bench deps-reliability deps-promtool bench bench-scale bench-smoke fuzz-smoke reliability reliability-smoke build test test-package test-suite test-reliability package-debug build-tests systemd-rootfs docs demo demo-test check-units install-check systemd-test release symbol-order generated install install-files deb clean

## deps-build: install the Debian packages the build needs, when missing (all the demo needs)
deps-build:
	@scripts/apt-install.sh $(BUILD_PACKAGES)

## deps: install the Debian packages the build and the tests need, when missing
deps: deps-build
	@scripts/apt-install.sh $(APT_PACKAGES)
	@python3 -c "import msal, requests, pycef, syslog_rfc5424_parser, prometheus_client, yaml, py_ocsf_models" 2>/dev/null || python3 -m pip install --quiet $(PIP_PACKAGES) \
		|| python3 -m pip install --quiet --break-system-packages $(PIP_PACKAGES)

## build: debug build of everything
build: deps
	$(SWIFT_BUILD)

## check-units: systemd-analyze verify + security (exposure <= 1.5) on the unit files (their
## Documentation= man pages are the generated ones)
check-units: build generated
	MANPATH=$(CURDIR)/$(GENERATED): scripts/check-units.sh $(BINARY)

## install-check: make install and the .deb install the same files
install-check: deb
	scripts/install-check.sh $(DEB)

## systemd-test: the .deb installed, run, removed and purged under a real systemd booted
## with systemd-nspawn
systemd-test: build deb
	scripts/systemd-integration.sh $(DEB) .build/debug

## test: the whole suite (unit files, real systemd, unit and integration tests with a real
## journald and PostgreSQL, end-to-end), within 15 minutes on 2 cores. The Debian packages
## first (apt cannot install two things at once); one debug build, tests included (beside it,
## debootstrap of the systemd test's rootfs); its daemon
## linked again with the Swift runtime in it (package-debug) for the .deb: the release build
## would take 11 more minutes, so `make deb`, `make bench` and `make reliability` build it,
## and make test does not. Then three lanes side by side (most of their time is waiting on
## processes and timers): the package (lintian, units, install check, systemd, the demo), the
## tests (scripts/run-tests.sh) and the benchmark harness, the short reliability table and
## the fuzzers. The syslog socket tests that time a receiver's reset against the sink's
## settle time run last, alone and one at a time: in the middle of the whole suite on 2 cores
## a receiver's thread was seen starved for longer than any settle time a test can wait.
test: deps deps-deb deps-bench deps-reliability deps-promtool deps-image format-check
	$(MAKE) --no-print-directory -j2 --output-sync=target build-tests systemd-rootfs $(GENERATE_MANUAL)
	$(MAKE) --no-print-directory package-debug BUILT=1
	$(MAKE) --no-print-directory -j3 --output-sync=target PACKAGED=$(PACKAGE_DEBUG) BUILT=1 test-package test-suite test-reliability
	NO_COLOR=1 .build/debug/defender-alertdPackageTests.xctest --testing-library swift-testing --no-parallel --filter SyslogDeliveryFaultTests

## format-check: every Swift file as `swift format` (the toolchain's) writes it, by the
## rules of .swift-format (150 columns, imports in order); `make format` rewrites them so
FORMATTED = Sources Tests fuzz Package.swift
format-check:
	$(SWIFT) format lint --strict --configuration .swift-format --recursive $(FORMATTED)

format:
	$(SWIFT) format --in-place --configuration .swift-format --recursive $(FORMATTED)

## test-package: the .deb (of PACKAGED), its units, the install check, the .deb under a real
## systemd, the demo (both APIs), the image with Podman, the Kubernetes manifests
test-package: deb
	MANPATH=$(CURDIR)/$(GENERATED): scripts/check-units.sh $(BINARY)
	scripts/install-check.sh $(DEB)
	scripts/systemd-integration.sh $(DEB) .build/debug
	$(MAKE) --no-print-directory demo-test
	$(MAKE) --no-print-directory image-test
	$(MAKE) --no-print-directory deploy-check

## test-suite: the tests, with a journald and a PostgreSQL server of their own (the
## end-to-end tests in a process of their own beside the others: scripts/run-tests.sh says
## why), then the benchmark harness
test-suite: deps
	scripts/with-journald.sh scripts/with-postgres.sh scripts/run-tests.sh .build/debug
	$(MAKE) --no-print-directory bench-smoke

## test-reliability: the short reliability table, then the fuzzers
test-reliability: reliability-smoke
	$(MAKE) --no-print-directory fuzz-smoke

## build-tests: the debug build with the tests
build-tests: deps
	$(SWIFT) build $(PINNED) $(BUILD_FLAGS) --build-tests

## systemd-rootfs: the Debian rootfs the systemd test boots (debootstrap, cached in
## .build-systemd/; make test makes it beside the build)
systemd-rootfs: deps-deb
	scripts/systemd-integration.sh --rootfs

## package-debug: the debug build's daemon linked once more with the Swift runtime in it (it
## runs where no toolchain is, as the release binary does; scripts/link-static.py) and the man
## page generator, in $(PACKAGE_DEBUG), for make test's .deb
package-debug: build $(GENERATE_MANUAL)
	scripts/link-static.py defender-alertd $(PACKAGE_DEBUG)/defender-alertd
	cp $(GENERATE_MANUAL) $(PACKAGE_DEBUG)/

## ArgumentParser's man page generator, in a build directory of its own: a build of one
## product in .build changes that build's plan, and the next build of everything there
## compiles modules again
$(GENERATE_MANUAL):
	$(SWIFT) build $(PINNED) --scratch-path $(TOOLS_SCRATCH) --product generate-manual

## demo: run the daemon in the foreground with config/demo.toml (Ctrl-C stops it)
demo: deps-build
	$(SWIFT_BUILD)
	@DEMO_API=$(DEMO_API) scripts/demo.sh .build/debug $(DEMO_SECONDS)

## demo-test: `make demo DEMO_SECONDS=15` as a person runs it, checked (exit 0, alerts in both
## sinks, no error or critical log line)
demo-test: build
	scripts/demo-check.sh

## docs: regenerate the README's configuration tables from the loader's key table
docs: build
	scripts/update-config-reference.py $(BINARY) README.md

## release: static-stdlib release binary that needs no Swift toolchain on the target, and the
## man page generator
release: deps
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-alertd
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product generate-manual

## symbol-order: rewrite scripts/symbol-order.txt from a release daemon run under callgrind
## (start, a backlog, empty polls, reload, stop), then relink with it (about 2 minutes)
symbol-order: deps
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-alertd
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-sim
	@scripts/apt-install.sh valgrind
	scripts/with-journald.sh scripts/update-symbol-order.py $(RELEASE)
	rm -f $(RELEASE)/defender-alertd
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-alertd

## generated: man pages and shell completions, generated from the packaged binary (the
## release build's; make test's is package-debug's)
generated: $(if $(filter $(RELEASE),$(PACKAGED)),release,$(PACKAGED)/defender-alertd)
	scripts/generate-docs.sh $(PACKAGED) $(GENERATED)

$(PACKAGE_DEBUG)/defender-alertd:
	$(MAKE) --no-print-directory package-debug

## bench: the daemon against a naive Python poller and curl, N = 1k, 10k, 100k; idle; 1,000 to
## 10,000 tenants in one daemon; the PostgreSQL state against the embedded one, and 600 tenants over 1, 2 and 3
## daemons of a group, on a PostgreSQL server of its own (release build; about 50 minutes;
## never part of make test)
bench: deps-bench
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-alertd
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-sim
	scripts/with-postgres.sh benchmarks/bench.py --build $(RELEASE)

## bench-scale: the scale runs of make bench alone (1,000, 3,000 and 10,000 tenants in one
## daemon, then 10,000 with alerts; release build; about 15 minutes)
bench-scale: deps-bench
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-alertd
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-sim
	benchmarks/bench.py --build $(RELEASE) --skip backfill,orders,idle,postgres,group

## bench-smoke: the benchmark harness on tiny sizes with the debug build (part of make test)
bench-smoke: build deps-bench
	scripts/with-postgres.sh benchmarks/bench.py --smoke --build .build/debug --out .build/bench-smoke

deps-bench:
	@scripts/apt-install.sh $(BENCH_PACKAGES)

deps-reliability:
	@scripts/apt-install.sh $(RELIABILITY_PACKAGES)

## deps-promtool: Prometheus's promtool, which checks and tests the README's alert rules, taken
## out of Debian's prometheus package into $(PROMTOOL_DIR) (installing the package would start
## a Prometheus server, and its recommends an exporter)
deps-promtool: $(PROMTOOL)
$(PROMTOOL):
	@rm -rf $(PROMTOOL_DIR) && mkdir -p $(PROMTOOL_DIR)/deb
	@cd $(PROMTOOL_DIR)/deb && apt-get download prometheus >/dev/null 2>&1 || { $(if $(filter 0,$(shell id -u)),,sudo )apt-get update -qq && apt-get download prometheus; }
	@dpkg-deb -x $(PROMTOOL_DIR)/deb/prometheus_*.deb $(PROMTOOL_DIR)/root && rm -rf $(PROMTOOL_DIR)/deb
	@$(PROMTOOL) --version 2>&1 | head -n 1

## reliability-smoke: the reliability table, short version (reliability/run.py --quick: every
## fault row with small counts, the group's rows on a PostgreSQL server of their own started by
## scripts/with-postgres.sh, in a lane beside the others; about 4 minutes; part of make test)
reliability-smoke: build deps-reliability
	scripts/with-postgres.sh reliability/run.py --quick --lanes 2 --build .build/debug

## reliability: the long version before a release (release build; about 2.5 hours): 200
## kills, a 100,000-alert backfill, 3-minute outages, the 30-minute soak, the group's rows on
## PostgreSQL (100 kills over three daemons, about 45 minutes), and 10 million fuzz
## executions per target, the configuration loader's included (its instrumented build of
## the whole module graph takes about 6 minutes)
reliability: deps deps-reliability
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-alertd
	$(SWIFT) build $(PINNED) $(RELEASE_FLAGS) --product defender-sim
	scripts/fuzz.sh build-config
	scripts/fuzz.sh run 10000000
	scripts/with-postgres.sh reliability/run.py --build $(RELEASE)

## fuzz-smoke: the libFuzzer targets (scanner and tree parser of API answers; timestamps,
## durations, Retry-After), built with -sanitize=fuzzer,address and run 20 s each over the
## corpus in fuzz/corpus (part of make test; `make reliability` runs 10 million each)
fuzz-smoke: deps
	scripts/fuzz.sh build
	scripts/fuzz.sh run 20s

## install: release build, man pages, completions, units, example configuration (run as root);
## then the configuration group (systemd-sysusers) and systemctl daemon-reload
install: generated
	@fresh=""; [ -n "$(DESTDIR)" ] || [ -e /etc/defender-alertd/defender-alertd.toml ] || fresh=1; \
	$(MAKE) --no-print-directory install-files && \
	if [ -z "$(DESTDIR)" ]; then \
		systemd-sysusers $(PREFIX)/lib/sysusers.d/defender-alertd.conf; \
		[ -z "$$fresh" ] || chgrp defender-alertd-config /etc/defender-alertd/defender-alertd.toml; \
		[ ! -d /run/systemd/system ] || systemctl daemon-reload; \
	fi

## install-files: copy what `generated` made into DESTDIR (debian/rules uses it too)
install-files:
	install -D -s -m 0755 $(PACKAGED)/defender-alertd $(DESTDIR)$(PREFIX)/bin/defender-alertd
	install -D -m 0644 systemd/defender-alertd.service $(DESTDIR)$(UNITDIR)/defender-alertd.service
	install -D -m 0644 systemd/defender-alertd@.service $(DESTDIR)$(UNITDIR)/defender-alertd@.service
	install -D -m 0644 systemd/defender-alertd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/defender-alertd.conf
	install -D -m 0644 $(GENERATED)/man8/defender-alertd.8 $(DESTDIR)$(PREFIX)/share/man/man8/defender-alertd.8
	install -D -m 0644 $(GENERATED)/man5/defender-alertd.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/defender-alertd.toml.5
	install -D -m 0644 $(GENERATED)/completions/defender-alertd $(DESTDIR)$(PREFIX)/share/bash-completion/completions/defender-alertd
	install -D -m 0644 $(GENERATED)/completions/_defender-alertd $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_defender-alertd
	install -D -m 0644 $(GENERATED)/completions/defender-alertd.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/defender-alertd.fish
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/defender-alertd/README.md
	install -D -m 0644 config/defender-alertd.toml $(DESTDIR)$(PREFIX)/share/doc/defender-alertd/examples/defender-alertd.toml
	@[ -e $(DESTDIR)/etc/defender-alertd/defender-alertd.toml ] || \
		install -D -m 0640 config/defender-alertd.toml $(DESTDIR)/etc/defender-alertd/defender-alertd.toml

## image: the OCI image localhost/defender-alertd:VERSION and :latest, built offline with Podman
## from the packaged daemon (the release build's, as the .deb's; make test's is package-debug's),
## its shared libraries and the CA certificates from Debian's packages (scripts/build-image.sh)
image: deps-image $(if $(filter $(RELEASE),$(PACKAGED)),release,$(PACKAGED)/defender-alertd)
	scripts/with-podman.sh scripts/build-image.sh $(PACKAGED) $(VERSION) "$(IMAGE_SOURCE)"

## image-save: the image as an OCI archive, dist/defender-alertd-VERSION.oci.tar (podman load -i)
image-save: image
	@mkdir -p dist && rm -f dist/defender-alertd-$(VERSION).oci.tar
	scripts/with-podman.sh podman save --format oci-archive -o dist/defender-alertd-$(VERSION).oci.tar $(IMAGE):$(VERSION)
	@echo "saved dist/defender-alertd-$(VERSION).oci.tar ($$(du -m dist/defender-alertd-$(VERSION).oci.tar | cut -f1) MB)"

## image-test: the image run with Podman against the simulator, alone, as a group on PostgreSQL,
## and from the Quadlet unit (scripts/container-test.py; part of make test)
image-test: image build
	scripts/with-postgres.sh scripts/with-podman.sh scripts/container-test.py --image $(IMAGE):$(VERSION) --build .build/debug

## deploy-check: the Kubernetes manifests against the Kubernetes API's schemas, and against
## the daemon's configuration reference and the image (scripts/check-deploy.py; part of make test)
deploy-check: deps-image build
	@python3 -c "import kubernetes_validate, yamllint" 2>/dev/null || python3 -m pip install --quiet $(K8S_PIP_PACKAGES) \
		|| python3 -m pip install --quiet --break-system-packages $(K8S_PIP_PACKAGES)
	scripts/check-deploy.py --binary $(BINARY)

deps-image:
	@scripts/apt-install.sh $(IMAGE_PACKAGES)
	@scripts/container-test.py --fetch-quadlet

## deb: dist/defender-alertd_VERSION_ARCH.deb from the release build, checked by lintian
deb: deps-deb generated
	rm -rf dist $(DEBHELPER_FILES)
	debian/rules binary
	lintian --fail-on error,warning --info dist/defender-alertd_$(VERSION)_$(ARCH).deb
	@echo "built dist/defender-alertd_$(VERSION)_$(ARCH).deb"

deps-deb: deps
	@scripts/apt-install.sh $(DEB_PACKAGES)

clean:
	rm -rf .build $(RELEASE_SCRATCH) .build-systemd $(TOOLS_SCRATCH) .demo dist $(DEBHELPER_FILES)
