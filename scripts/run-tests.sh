#!/usr/bin/env bash
# Runs the built test bundle as two processes side by side: the end-to-end tests in one, every
# other test in the other (but the syslog socket fault tests, which `make test` runs last,
# alone). Exits non-zero if either fails.
#
# Why two: the end-to-end tests drive real processes and wait for them synchronously (a sleep
# between polls of a file, a child's exit, a datagram). Swift runs every test on its
# cooperative pool, one thread per core: on 2 cores, two such waits took both threads, and a
# unit test's async work (a PostgreSQL migration holding its lock, a sleep racing its
# cancellation) stood still for 30 s and more, and failed its time limit. Each process has a
# pool of its own. (Two `swift test` at once wait for each other's lock on .build: the bundle
# is run directly, with the arguments `swift test` gives it.)
#
# Usage: scripts/run-tests.sh BUILD_DIR (the debug build's products, built with --build-tests)
set -uo pipefail
build=${1:?usage: $0 BUILD_DIR}
bundle=$(ls -d "$build"/*PackageTests.xctest 2>/dev/null | head -n 1)
[ -x "$bundle" ] || { echo "run-tests: no test bundle in $build (swift build --build-tests)" >&2; exit 1; }
# Plain text, as `swift test` prints it into a log.
export NO_COLOR=1

"$bundle" --testing-library swift-testing --filter EndToEndTests &
end_to_end=$!
"$bundle" --testing-library swift-testing --skip EndToEndTests --skip SyslogDeliveryFaultTests
others=$?
wait "$end_to_end"
end_to_end=$?
echo "run-tests: end-to-end tests exit $end_to_end, the other tests exit $others" >&2
[ "$end_to_end" = 0 ] && [ "$others" = 0 ]
