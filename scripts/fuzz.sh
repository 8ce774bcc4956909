#!/bin/sh
# Builds the libFuzzer targets (-sanitize=fuzzer,address) and runs each over its corpus.
#   scripts/fuzz.sh build                 build .build/fuzz/<target> (the light targets: seconds)
#   scripts/fuzz.sh build-config          also build the configuration loader's target, every
#                                         module it uses instrumented (SwiftPM; minutes)
#   scripts/fuzz.sh run SECONDS|RUNS      run every target for that long (a number with s) or
#                                         that many executions; a crash fails, its input is
#                                         saved in .build/fuzz/crashes/ and printed
# The corpus in fuzz/corpus/<target>/ is read, never written: new inputs go to
# .build/fuzz/new/<target>/ (copy the interesting ones into the corpus by hand).
set -eu
cd "$(dirname "$0")/.."
out=.build/fuzz
light="json-page time-text"
targets=$light
[ ! -x "$out/config" ] || targets="$targets config"

sources() {
    case "$1" in
        json-page) echo "Sources/OrderedJSON/*.swift fuzz/JSONPage.swift" ;;
        time-text) echo "Sources/Timekeeping/*.swift fuzz/TimeText.swift" ;;
    esac
}

build() {
    mkdir -p "$out"
    for target in $light; do
        # One module of the target's sources and its harness: coverage in exactly the code fuzzed.
        # shellcheck disable=SC2046
        swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name Fuzzed \
            $(sources "$target") -o "$out/$target" 2>&1 | grep -v "Cannot export local symbol" || true
        test -x "$out/$target" || { echo "fuzz: building $target failed" >&2; exit 1; }
    done
}

# The configuration loader needs the whole AlertForwarder module graph: SwiftPM builds it in a
# build directory of its own, Swift, C and C++ alike with coverage and AddressSanitizer, and
# links libFuzzer without its main (Sources/fuzz-config calls LLVMFuzzerRunDriver).
build_config() {
    mkdir -p "$out"
    fuzzer=$(find "$(dirname "$(command -v swiftc)")/../lib" -name "libclang_rt.fuzzer_no_main-$(uname -m).a" | head -1)
    test -n "$fuzzer" || { echo "fuzz: libclang_rt.fuzzer_no_main not found in the toolchain" >&2; exit 1; }
    coverage=edge,trace-cmp,inline-8bit-counters,pc-table
    swift build --force-resolved-versions --product fuzz-config --build-path .build/fuzz-swiftpm \
        -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=$coverage -Xswiftc -DFUZZING \
        -Xcc -fsanitize=address,fuzzer-no-link -Xcxx -fsanitize=address,fuzzer-no-link \
        -Xlinker "$fuzzer" -Xlinker -lstdc++ 2>&1 | grep -E "error|warning: unable|Compiling fuzz|Build" || true
    cp .build/fuzz-swiftpm/debug/fuzz-config "$out/config"
}

run() {
    limit=$1
    case "$limit" in
        *s) option="-max_total_time=${limit%s}" ;;
        *) option="-runs=$limit" ;;
    esac
    mkdir -p "$out/crashes"
    status=0
    for target in $targets; do
        # The configuration loader runs about 330 inputs a second under ASan (TOMLKit, every
        # check): 10 million would take 8 hours, so it gets a time limit instead.
        limit_option=$option
        [ "$target" != config ] || case "$option" in -runs=*) limit_option="-max_total_time=${CONFIG_SECONDS:-900}" ;; esac
        mkdir -p "$out/new/$target"
        log="$out/$target.log"
        # Swift's own crash handler would race ASan's report: ASan alone reports. Leak checks
        # are off: the Swift runtime's one-time caches read as leaks, and TOMLKit leaks about
        # 1 KB a parse (noted in the README); growth beyond that is caught by -rss_limit_mb.
        if SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "$out/$target" "$limit_option" -detect_leaks=0 -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$out/crashes/$target-" "$out/new/$target" "fuzz/corpus/$target" >"$log" 2>&1; then
            echo "fuzz $target: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions, no crash ($(ls "fuzz/corpus/$target" | wc -l) corpus inputs, $(ls "$out/new/$target" | wc -l) found since)"
        else
            status=1
            echo "fuzz $target: CRASH" >&2
            tail -40 "$log" >&2
            ls "$out/crashes/$target-"* >&2 2>/dev/null || true
        fi
    done
    return $status
}

case "${1:-}" in
    build) build ;;
    build-config) build; build_config ;;
    run) run "${2:-30s}" ;;
    *) echo "usage: $0 build | run SECONDS|RUNS" >&2; exit 2 ;;
esac
