#!/usr/bin/env bash
# What SQLite itself spends on the audit trail a full rebuild writes, with no Rust code
# and no bound values: a floor under any rebuild that keeps the trail in one SQLite file,
# which has one writer.
#
#   scripts/audit-floor.sh [DATA_DIR]      # default ./data; needs the sqlite3 command
#
# DATA_DIR must hold a log (idp.db) and read models rebuilt from it (read.db), e.g. after
# `idp bench seed --events 1000000` and `idp replay rebuild --all`. In a scratch database
# under a temporary directory it times
#   scan   reading every event's envelope from the log, its metadata parsed once
#   copy   INSERT INTO a copy of audit_entries SELECT * FROM the rebuilt one
#   index  each of the trail's indexes, from read.db's own DDL, built on the copy with
#          the pragmas a rebuild's index builds use (PRAGMA threads = 2)
# and prints the wall, user and system seconds of each and their sums. DATA_DIR is only
# read.
set -euo pipefail

dir=${1:-data}
log="$dir/idp.db"
read_db="$dir/read.db"
for f in "$log" "$read_db"; do
    [[ -f $f ]] || { echo "no $f: seed a log and rebuild its read models first" >&2; exit 2; }
done
command -v sqlite3 >/dev/null || { echo "the sqlite3 command is needed" >&2; exit 2; }
entries=$(sqlite3 -readonly "$read_db" "SELECT count(*) FROM audit_entries")
[[ $entries -gt 0 ]] || { echo "$read_db has no audit entries: rebuild first" >&2; exit 2; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
copy="$scratch/copy.db"

# Runs SQL on the scratch database with the read models attached read-only and prints
# "real user sys" of its last statement.
timed() {
    sqlite3 "$copy" <<SQL | awk '/^Run Time/ { r = $4; u = $6; s = $8 } END { print r, u, s }'
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
ATTACH 'file:$read_db?mode=ro' AS src;
ATTACH 'file:$log?mode=ro' AS log;
$1
.timer on
$2
SQL
}

total_real=0 total_user=0 total_sys=0
report() {
    read -r real user sys <<<"$2"
    printf '%-28s %7.2f s  user %6.2f  sys %6.2f\n' "$1" "$real" "$user" "$sys"
    total_real=$(echo "$total_real + $real" | bc)
    total_user=$(echo "$total_user + $user" | bc)
    total_sys=$(echo "$total_sys + $sys" | bc)
}

echo "audit entries: $entries (sqlite3 $(sqlite3 --version | cut -d' ' -f1))"
report scan "$(timed "" "SELECT count(*), max(recorded_at), count(json_extract(metadata, '\$.actor.id', '\$.correlation_id', '\$.organization', '\$.occurred_at')) FROM log.events;")"
table_ddl=$(sqlite3 -readonly "$read_db" "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_entries'")
sqlite3 "$copy" "PRAGMA journal_mode = WAL; $table_ddl;" >/dev/null
report copy "$(timed "" "INSERT INTO audit_entries SELECT * FROM src.audit_entries ORDER BY commit_pos, prepare_pos;")"
while IFS= read -r row; do
    name=${row%%|*}
    name=${name%__next}
    ddl=${row#*|}
    report "index $name" "$(timed "PRAGMA threads = 2;" "$ddl;")"
done < <(sqlite3 -readonly "$read_db" \
    "SELECT name, replace(sql, char(10), ' ') FROM sqlite_master
      WHERE type = 'index' AND tbl_name = 'audit_entries' AND sql IS NOT NULL ORDER BY name")
printf '%-28s %7.2f s  user %6.2f  sys %6.2f\n' "sum" "$total_real" "$total_user" "$total_sys"
