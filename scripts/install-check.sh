#!/usr/bin/env bash
# `make install` and the .deb install the same files: `make install-files` into an empty
# DESTDIR (Debian's unit directory) must give exactly the .deb's file list, apart from what
# only a Debian package carries (changelog, copyright, lintian overrides).
# Usage: scripts/install-check.sh DEB
set -euo pipefail
deb=$(realpath "${1:?usage: install-check.sh DEB}")
cd "$(dirname "$0")/.."
destdir=$(mktemp -d)
trap 'rm -rf "$destdir"' EXIT
make --no-print-directory install-files DESTDIR="$destdir" PREFIX=/usr UNITDIR=/lib/systemd/system >/dev/null
installed=$(cd "$destdir" && find . -type f | sed 's/^\.//' | sort)
packaged=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's/^\.//; s/\.gz$//' \
    | grep -v -e '^/usr/share/doc/defender-alertd/changelog$' -e '^/usr/share/doc/defender-alertd/copyright$' \
        -e '^/usr/share/lintian/' | sort)
if [ "$installed" != "$packaged" ]; then
    echo "install-check: FAILED: make install and the .deb install different files:"
    diff <(echo "$installed") <(echo "$packaged") | sed 's/^</  make install only:/; s/^>/  .deb only:/' | grep only || true
    exit 1
fi
echo "install-check: ok: make install and the .deb install the same $(echo "$installed" | wc -l) files"
