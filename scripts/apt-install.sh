#!/usr/bin/env bash
# Installs the Debian packages named that are missing (apt-get update first, once), with sudo
# when not root. Usage: scripts/apt-install.sh PACKAGE...
set -euo pipefail
missing=()
for package in "$@"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
# libsystemd-dev must match libsystemd0 exactly: a newer one would upgrade libsystemd0 and,
# through it, the host's systemd. Take the installed library's version when apt still has it.
for i in "${!missing[@]}"; do
    if [ "${missing[$i]}" = libsystemd-dev ] && installed=$(dpkg-query -W -f='${Version}' libsystemd0 2>/dev/null) \
        && apt-cache madison libsystemd-dev | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$installed"; then
        missing[$i]="libsystemd-dev=$installed"
    fi
done
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
