#!/usr/bin/env bash
# Runs each part of station_bench on tiny sizes and checks the report's JSON keys.
#   smoke.sh STATION_BENCH SIMDEVICE BASELINE_SH
set -euo pipefail
bench=$1
simdevice=$2
baseline=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
r=$work/results
mkdir -p "$r"
"$bench" --work "$work" hsm --seconds 0.2 > "$r/hsm.json"
"$bench" --work "$work" line --devices 24 --fixtures 4 > "$r/line-24-1.json"
"$bench" --work "$work" serial --devices 4 --fixtures 2 --baud 115200 --simdevice "$simdevice" > "$r/serial.json"
"$bench" --work "$work" records --devices 300 > "$r/records.json"
"$bench" --work "$work" floor --seconds 0.05 --journal-devices 50 > "$r/floor.json"
if command -v qrencode >/dev/null; then
  "$baseline" "$work/baseline" 4 2 > "$r/baseline.json"
else
  echo "smoke: qrencode is not installed; the baseline part is skipped" >&2
fi
echo '{"query_serial_ms": 1, "query_pkhash_ms": 1, "verify_s": 1, "verify_ok": true}' > "$r/records-cli.json"
"$bench" report --dir "$r" --json "$work/out.json"
for key in station_devices_per_s baseline_devices_per_s hsm_sign_per_s hsm_keygen_per_s serial_s_per_device \
  serial_wire_s_per_device rss_mb_by_devices s_per_device_by_devices query_ms_1m verify_s_1m per_device \
  hsm_signatures challenges_verified journal_entries floor_devices_per_s; do
  grep -q "\"$key\"" "$work/out.json" || { echo "smoke: key $key missing from the report" >&2; exit 1; }
done
# Nothing skipped: every device done, the journal verified, one signature and one
# challenge per device.
grep -q '"journal_verified":true' "$r/line-24-1.json"
grep -q '"devices_done_in_db":24' "$r/line-24-1.json"
grep -q '"challenges_verified":1.0' "$r/line-24-1.json"
grep -q '"devices_done_in_db":4' "$r/serial.json"
# The journal's own counters came through (transactions and WAL pages are not zero).
grep -Eq '"journal_transactions":[0-9.]*[1-9]' "$r/line-24-1.json"
grep -Eq '"wal_pages":[0-9.]*[1-9]' "$r/line-24-1.json"
# The floor timed every step (each ran and took time) and printed its labels for real.
for op in dpp_key dpp_uri certificate device_key_import pop_sign pop_verify label_zpl label_print_tcp \
  journal_9_entries; do
  grep -Eq "\"$op\":\{\"cpu_us\":[0-9.e-]*[1-9]" "$r/floor.json" || { echo "smoke: floor op $op missing" >&2; exit 1; }
done
grep -q '"journal_entries_per_device":9.0' "$r/floor.json"
grep -Eq '"labels_printed":[1-9]' "$r/floor.json"
echo "smoke: ok"
