#!/usr/bin/env bash
# Man pages and shell completions from a built binary, so they cannot drift from the code:
# defender-alertd(8) from the command-line definitions (ArgumentParser's generate-manual),
# defender-alertd.toml(5) from the configuration key table (`config-reference --format man`),
# and bash, zsh and fish completions from ArgumentParser.
# Usage: scripts/generate-docs.sh BUILD-DIR OUT-DIR   (BUILD-DIR holds defender-alertd and generate-manual)
set -euo pipefail
build=${1:?usage: generate-docs.sh BUILD-DIR OUT-DIR}
out=${2:?usage: generate-docs.sh BUILD-DIR OUT-DIR}
cd "$(dirname "$0")/.."
binary=$build/defender-alertd
# The date of the release, from the packaging changelog (reproducible, not today's date).
date=$(dpkg-parsechangelog -l debian/changelog -S Date | xargs -I{} date -u -d {} +%F)

rm -rf "$out"
mkdir -p "$out/man8" "$out/man5" "$out/completions"
"$build/generate-manual" "$binary" --section 8 --date "$date" --authors "defender-alertd developers" -o "$out/man8"
# generate-manual copies the blank lines between paragraphs of a discussion, which mdoc warns
# about ("Empty input line"); a paragraph break is .Pp.
sed -i 's/^$/.Pp/' "$out/man8/defender-alertd.8"
"$binary" config-reference --format man --date "$date" > "$out/man5/defender-alertd.toml.5"
# A completion is sourced, not run: no #! line.
"$binary" --generate-completion-script bash | sed '1{/^#!/d}' > "$out/completions/defender-alertd"
"$binary" --generate-completion-script zsh > "$out/completions/_defender-alertd"
"$binary" --generate-completion-script fish > "$out/completions/defender-alertd.fish"
echo "generate-docs: man pages and completions in $out"
