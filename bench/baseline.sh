#!/usr/bin/env bash
# The baseline of issue 11: the naive provisioning script a team writes first. Per device:
# `openssl ecparam -genkey` (the DPP key), `openssl req` (a CSR, with -pubkey so the key's
# SPKI comes out for the QR code), `openssl x509 -req` signed with a CA key file, `qrencode`
# PNG of the DPP URI, and a row appended with `sqlite3`. WORKERS processes share the devices.
#   bench/baseline.sh DIR COUNT WORKERS     prints {"devices","workers","seconds","devices_per_s"}
set -euo pipefail
dir=$1
count=$2
workers=$3
mkdir -p "$dir/out"
cd "$dir"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -new -x509 -key ca.key -subj "/O=Baseline/CN=Baseline CA" -days 3650 -out ca.pem 2>/dev/null
sqlite3 devices.db "CREATE TABLE devices(serial TEXT PRIMARY KEY, cert TEXT, uri TEXT, created TEXT)"

provision() {
  local i=$1
  local d="out/$i"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d.key" 2>/dev/null
  openssl req -new -key "$d.key" -subj "/CN=BASE-$i" -pubkey -out "$d.csr" 2>/dev/null
  openssl x509 -req -in "$d.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" -days 3650 \
    -out "$d.pem" 2>/dev/null
  local key
  key=$(sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$d.csr" | grep -v -- '-----' | tr -d '\n')
  local uri="DPP:C:81/1,81/6,81/11;K:$key;;"
  qrencode -o "$d.png" "$uri"
  sqlite3 -cmd '.timeout 10000' devices.db "INSERT INTO devices VALUES('BASE-$i', '$(tr -d '\n' < "$d.pem")', '$uri', datetime('now'))"
}

worker() {
  local w=$1
  for ((i = w; i <= count; i += workers)); do provision "$i"; done
}

start=$(date +%s%N)
for ((w = 1; w <= workers; w++)); do worker "$w" & done
wait
end=$(date +%s%N)
done_rows=$(sqlite3 devices.db "SELECT count(*) FROM devices")
awk -v n="$done_rows" -v w="$workers" -v ns=$((end - start)) \
  'BEGIN { s = ns / 1e9; printf "{\"devices\": %d, \"workers\": %d, \"seconds\": %.3f, \"devices_per_s\": %.3f}\n", n, w, s, n / s }'
