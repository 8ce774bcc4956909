#!/usr/bin/env bash
# Runs a command with a real PostgreSQL server of its own: Debian's `postgresql` (installed
# when missing), `initdb` in a temporary directory as an unprivileged user, listening on
# 127.0.0.1 only (password authentication, SCRAM-SHA-256), stopped and removed afterwards,
# also on Ctrl-C or SIGTERM. No systemd. Exits with the command's status.
#
# The command gets:
#   DEFENDER_TEST_POSTGRES_URL                   postgresql://alertd_test@127.0.0.1:PORT/alertd_test
#   DEFENDER_TEST_POSTGRES_PASSWORD_FILE         alertd_test's password (mode 0600, the caller's)
#                                                alertd_test may LOGIN and CREATEDB, and owns its database
#   DEFENDER_TEST_POSTGRES_SUPERUSER_URL         postgresql://postgres@127.0.0.1:PORT/postgres
#   DEFENDER_TEST_POSTGRES_SUPERUSER_PASSWORD_FILE
#   DEFENDER_TEST_POSTGRES_BIN                   the server's bin directory (psql, pg_ctl, ...)
#   DEFENDER_TEST_POSTGRES_DATA                  its data directory
#   DEFENDER_TEST_POSTGRES_CTL                   pg_ctl for this server, as the user that owns it,
#                                                words separated by single spaces (no quoting
#                                                needed); append a command:
#                                                  $DEFENDER_TEST_POSTGRES_CTL restart -w -m fast
#                                                  $DEFENDER_TEST_POSTGRES_CTL stop -w -m fast
#                                                  $DEFENDER_TEST_POSTGRES_CTL start -w
#                                                (the port, socket directory and log stay the same).
# When DEFENDER_TEST_POSTGRES_URL is already set, the command just runs (against that server).
#
# Usage: scripts/with-postgres.sh COMMAND [ARGUMENT...]
set -uo pipefail
if [ $# -eq 0 ]; then echo "usage: $0 COMMAND [ARGUMENT...]" >&2; exit 2; fi
if [ -n "${DEFENDER_TEST_POSTGRES_URL:-}" ]; then exec "$@"; fi

fail() { echo "with-postgres: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
"$here/apt-install.sh" postgresql >&2 || fail "could not install Debian's postgresql"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] || fail "no /usr/lib/postgresql/*/bin/initdb"

# The server runs as an unprivileged user: PostgreSQL refuses to run as root. As root, that is
# the `postgres` system user the Debian package creates; otherwise the caller.
as_owner=()
owner=$(id -un)
if [ "$(id -u)" = 0 ]; then
    owner=postgres
    id -u "$owner" >/dev/null 2>&1 || fail "no '$owner' system user (Debian's postgresql package creates it)"
    if command -v runuser >/dev/null 2>&1; then
        as_owner=(runuser -u "$owner" --)
    elif command -v setpriv >/dev/null 2>&1; then
        as_owner=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups --)
    else
        fail "neither runuser nor setpriv found (util-linux)"
    fi
fi

# The directory's path becomes part of DEFENDER_TEST_POSTGRES_CTL (split on spaces) and of a
# Unix socket path (at most 107 bytes): a TMPDIR with blanks or a long one falls back to /tmp.
parent=${TMPDIR:-/tmp}
case "$parent" in *[[:space:]]*) parent=/tmp ;; esac
[ ${#parent} -le 40 ] || parent=/tmp
if [ ${#as_owner[@]} -gt 0 ] && ! "${as_owner[@]}" test -x "$parent"; then parent=/tmp; fi
directory=$(mktemp -d "$parent/defender-postgres.XXXXXX") || fail "mktemp -d in $parent failed"
server=$directory/server          # the owner's: data, socket, log
data=$server/data
socket_dir=$server/socket
log=$server/server.log
password_file=$directory/alertd_test.password
superuser_password_file=$directory/superuser.password
passfile=$directory/pgpass        # libpq's password file, for this script's own psql
started=""
child=""

stop_server() {
    [ -n "$started" ] || return 0
    started=""
    # A test may have stopped the server already (then pg_ctl says so, and that is fine) or left
    # it stopped with SIGSTOP (then it is continued first; a server that still does not stop
    # within 30 s is killed).
    pid=""
    [ -f "$data/postmaster.pid" ] && pid=$(head -n 1 "$data/postmaster.pid")
    case "$pid" in ''|*[!0-9]*) pid="" ;; *) kill -CONT "$pid" 2>/dev/null ;; esac
    (cd / && "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop) >/dev/null 2>&1 && return 0
    if [ -n "$pid" ] && [ -f "$data/postmaster.pid" ]; then kill -KILL "$pid" 2>/dev/null; sleep 0.5; fi
}
cleanup() {
    stop_server
    rm -rf "$directory"
}
on_signal() {
    # Passed on to the command; the EXIT trap stops the server once it has ended.
    if [ -n "$child" ]; then kill -"$1" "$child" 2>/dev/null; else exit $((128 + $2)); fi
}
trap cleanup EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

random_password() { head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; }
umask 077
random_password >"$superuser_password_file"
random_password >"$password_file"
[ -s "$password_file" ] && [ -s "$superuser_password_file" ] || fail "could not make passwords"
mkdir -p "$server"
if [ ${#as_owner[@]} -gt 0 ]; then
    chmod 0711 "$directory"       # the owner passes through to its own directory only
    chown "$owner:" "$server"
fi
"${as_owner[@]}" mkdir -m 0700 "$socket_dir"
# initdb reads the superuser's password from a file the owner can read, removed right after.
initdb_password=$server/initdb.password
install -m 0600 /dev/null "$initdb_password"
cat "$superuser_password_file" >"$initdb_password"
[ ${#as_owner[@]} -gt 0 ] && chown "$owner:" "$initdb_password"
# --no-sync: only initdb's own files skip fsync (nothing here must survive a host crash); the
# server itself runs with fsync=on, as a production one does.
if ! (cd / && "${as_owner[@]}" "$bin/initdb" -D "$data" -U postgres --auth=scram-sha-256 \
        --pwfile="$initdb_password" -E UTF8 --no-locale --no-sync) >"$directory/initdb.log" 2>&1; then
    cat "$directory/initdb.log" >&2
    fail "initdb failed"
fi
rm -f "$initdb_password" "$directory/initdb.log"

# A port below the kernel's ephemeral range (32768 and up), picked at random and tried: a port
# handed to a bind(0) or to an outgoing connection meanwhile never collides with it. Another
# server taking it between the pick and the bind only costs a retry.
port=""
for _ in $(seq 1 20); do
    candidate=$((20000 + RANDOM % 12768))
    options="-c listen_addresses=127.0.0.1 -p $candidate -k $socket_dir -c fsync=on"
    : >"$log"
    [ ${#as_owner[@]} -gt 0 ] && chown "$owner:" "$log"
    if (cd / && "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$options" start) >/dev/null 2>&1; then
        started=yes
        port=$candidate
        break
    fi
    if ! grep -q 'Address already in use' "$log"; then
        cat "$log" >&2
        fail "the server did not start"
    fi
done
[ -n "$port" ] || fail "no free port found for the server"
# The same settings in postgresql.conf, so that a later `pg_ctl start` (after a test stopped the
# server) listens where this one did; `pg_ctl restart` reuses the options given here anyway.
"${as_owner[@]}" tee -a "$data/postgresql.conf" >/dev/null <<EOF

# with-postgres.sh: loopback only, this port, the socket in the test's own directory
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$socket_dir'
fsync = on
EOF

# The test role and its database, over TCP with the superuser's password (from a libpq password
# file: never on a command line). The password is read by psql from the file (a `\set` from a
# backtick command) and the statements that carry it are kept out of the server's log.
printf '127.0.0.1:%s:*:postgres:%s\n' "$port" "$(cat "$superuser_password_file")" >"$passfile"
if ! PGPASSFILE=$passfile "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v password_file="$password_file" >/dev/null 2>"$directory/psql.log" <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
\set password `cat :'password_file'`
CREATE ROLE alertd_test LOGIN CREATEDB PASSWORD :'password';
\unset password
CREATE DATABASE alertd_test OWNER alertd_test;
SQL
then
    cat "$directory/psql.log" >&2
    fail "could not create the role and database alertd_test"
fi
rm -f "$passfile" "$directory/psql.log"

export DEFENDER_TEST_POSTGRES_URL="postgresql://alertd_test@127.0.0.1:$port/alertd_test"
export DEFENDER_TEST_POSTGRES_PASSWORD_FILE="$password_file"
export DEFENDER_TEST_POSTGRES_SUPERUSER_URL="postgresql://postgres@127.0.0.1:$port/postgres"
export DEFENDER_TEST_POSTGRES_SUPERUSER_PASSWORD_FILE="$superuser_password_file"
export DEFENDER_TEST_POSTGRES_BIN="$bin"
export DEFENDER_TEST_POSTGRES_DATA="$data"
export DEFENDER_TEST_POSTGRES_CTL="${as_owner[*]}${as_owner[*]:+ }$bin/pg_ctl -D $data -l $log"

# The command runs in the background so that a signal reaches the traps at once (a foreground
# command would hold them until it ends); its own subshell restores SIGINT and SIGQUIT (bash
# ignores them in background commands), and it keeps the caller's standard input.
umask 022
( trap - INT QUIT; exec "$@" ) <&0 &
child=$!
wait "$child"
status=$?
# A signal ends `wait` early: wait again until the command has really ended.
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
child=""
exit "$status"
