#!/usr/bin/env bash
# Runs a command with Podman set up by the project, not by hand on the machine: a
# containers.conf of its own (CONTAINERS_CONF). On these machines crun refuses the host's
# hybrid cgroups and the default ulimits: runc, cgroupfs, no default ulimits; events in a file
# (no journald needed). A containers.conf the caller names (CONTAINERS_CONF) wins.
# Usage: scripts/with-podman.sh COMMAND [ARGUMENT...]
set -euo pipefail
command -v podman >/dev/null || { echo "with-podman: no podman (make deps-image installs it)" >&2; exit 1; }
if [ -z "${CONTAINERS_CONF:-}" ]; then
    CONTAINERS_CONF=$(mktemp "${TMPDIR:-/tmp}/defender-alertd-containers.XXXXXX.conf")
    trap 'rm -f "$CONTAINERS_CONF"' EXIT
    printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' \
        > "$CONTAINERS_CONF"
    export CONTAINERS_CONF
fi
"$@"
