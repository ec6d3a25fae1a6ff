#!/usr/bin/env bash
# Users at scale (issue #14): seeds a store with many users, starts the server on it, and
# measures over HTTP user creations (unique usernames and emails, no password), instant
# search by prefix, a filtered list page and `as_of` reads of a user with 100 changes,
# then the server's resident memory.
#
#   scripts/bench-people.sh                     # 1,000,000 users over 100 organizations, SQLite
#   scripts/bench-people.sh --users 100000      # fewer
#   scripts/bench-people.sh --postgres URL      # a scratch database idp_people_bench on URL's server
#   scripts/bench-people.sh --binary PATH       # that idp binary instead of a release build
#   scripts/bench-people.sh --duration 20 --concurrency 32
#
# The seed runs `idp bench people-seed` on the stopped store; the server then builds its
# read models from the log (the time it takes is printed), and `idp bench people` drives
# it. Resident memory is read from /proc once the read models have caught up, and again
# after the run. The server's log is dropped with the scratch store unless SERVER_LOG names
# a file to keep it in. Needs curl and python3 (and psql for --postgres).
set -euo pipefail

users=1000000
organizations=100
duration=10
concurrency=32
postgres=""
binary=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --users) users="$2"; shift 2 ;;
        --organizations) organizations="$2"; shift 2 ;;
        --postgres) postgres="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --binary) binary="$(realpath "$2")"; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-people: unknown argument $1" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -n "$binary" ]]; then
    idp="$binary"
else
    cargo build --release --quiet -p api --bin idp
    idp="${CARGO_TARGET_DIR:-$root/target}/release/idp"
fi

work="$(mktemp -d -t idp-people-bench.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export IDP_DATA_DIR="$work/data"
export IDP_LISTEN="127.0.0.1:$port"
export IDP_LOG="${IDP_LOG:-warn}" IDP_LOG_FORMAT=json
unset IDP_CONFIG IDP_EVENTSTORE_URL IDP_MASTER_KEY IDP_MASTER_KEY_FILE
label="SQLite"
if [[ -n "$postgres" ]]; then
    psql "$postgres" -q -v ON_ERROR_STOP=1 \
        -c 'DROP DATABASE IF EXISTS idp_people_bench WITH (FORCE)' \
        -c 'CREATE DATABASE idp_people_bench' >/dev/null
    IDP_DATABASE_URL="$(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/idp_people_bench")))' "$postgres")"
    export IDP_DATABASE_URL
    label="PostgreSQL"
else
    unset IDP_DATABASE_URL
fi

json() {
    python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}
start_server() {
    "$idp" serve >>"${SERVER_LOG:-$work/server.log}" 2>&1 &
    server_pid=$!
}
wait_ready() {
    for _ in $(seq 1 36000); do
        if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "bench-people: the server is not ready" >&2
    exit 1
}
# Resident memory, and how much of it is the process's own (anonymous) rather than
# pages of the database files it maps.
rss() {
    awk '/^VmRSS/ { t = $2 } /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 }
        END { printf "%.0f MiB (anonymous %.0f MiB, mapped files %.0f MiB)", t / 1024, a / 1024, f / 1024 }' \
        "/proc/$server_pid/status"
}

# A first start creates the store, the master key and the admin client.
start_server
wait_ready
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""

"$idp" bench people-seed --users "$users" --organizations "$organizations" | tee "$work/seed.txt"
history_user="$(awk '/^history user:/ { print $3 }' "$work/seed.txt")"
history_since="$(awk '/^history user:/ { print $NF }' "$work/seed.txt" | tr -d ')')"
organization="$(awk '/^organization:/ { print $2 }' "$work/seed.txt")"

started=$(date +%s.%N)
start_server
wait_ready
ready=$(date +%s.%N)
printf '%s: read models built from the seeded log in %.1f s; resident memory %s\n' \
    "$label" "$(python3 -c "print($ready - $started)")" "$(rss)"

BENCH_CLIENT_SECRET="$(json client_secret <"$IDP_DATA_DIR/bootstrap.json")" \
"$idp" bench people --url "$base" \
    --client-id "$(json client_id <"$IDP_DATA_DIR/bootstrap.json")" \
    --organization-id "$organization" \
    --history-user "$history_user" --history-since "$history_since" \
    --concurrency "$concurrency" --duration "$duration" --label "$label"
echo "$label: resident memory after the run $(rss)"
