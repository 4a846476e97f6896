#!/usr/bin/env bash
# vigil-edge at 1 Hz × 4 controllers: resident memory, CPU and the spool's
# write amplification (docs/benchmarks.md, "Edge gateway").
#
#   cargo build --release -p vigil-edge && cargo build -p vigil
#   device-firmware/bench/edge-bench.sh            # 120 s, fsync groups of 200 ms
#   SECS=300 SYNC_MS=1000 device-firmware/bench/edge-bench.sh
#
# The engine (any build: it is not what is measured) and four emulated
# elevator controllers run beside the gateway; the controllers' map is the
# shipped one with idle_report_s = 1, so each device sends one sample a
# second (plus its changes). WORK must be on a real disk (not tmpfs) for the
# bytes written to mean anything.
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}
VIGIL=${VIGIL:-$target/debug/vigil}
EDGE=${EDGE:-$target/release/vigil-edge}
SECS=${SECS:-120}
SYNC_MS=${SYNC_MS:-200}
DEVICES=${DEVICES:-4}
work=$(mktemp -d "${WORK:-/var/tmp}/vigil-edge-bench.XXXXXX")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(port); http=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$VIGIL" run --data-dir "$work/data" --mqtt-addr "127.0.0.1:$mqtt" --http-addr "127.0.0.1:$http" \
  --admin-token bench >"$work/vigil.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.2; done

"$EDGE" emulate --elevators "$DEVICES" --rides 0 --stations 0 --seed 3 --listen 127.0.0.1:0 \
  --import "http://127.0.0.1:$http" --token bench --gateway-config "$work/edge.toml" \
  --mqtt "127.0.0.1:$mqtt" --spool-dir spool >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/edge.toml" ] && break; sleep 0.2; done
"$EDGE" show-map elevator | sed 's/^idle_report_s = 30/idle_report_s = 1/' >"$work/elevator-1hz.toml"
sed -i "s|^map = \"elevator\"|map = \"elevator-1hz.toml\"|; s|^dir = \"spool\"|dir = \"spool\"\nsync_ms = $SYNC_MS|" "$work/edge.toml"

"$EDGE" run --config "$work/edge.toml" 2>"$work/edge.log" &
gw=$!
pids+=($gw)
sleep 10 # connect, first samples, steady state

tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
wbytes() { awk '/^write_bytes/ {print $2}' "/proc/$gw/io"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$gw/status"; }
c0=$(cpu); w0=$(wbytes); t0=$(date +%s.%N)
max=0; sum=0; n=0
for _ in $(seq 1 "$SECS"); do
  r=$(rss); sum=$((sum + r)); n=$((n + 1)); [ "$r" -gt "$max" ] && max=$r
  sleep 1
done
c1=$(cpu); w1=$(wbytes); t1=$(date +%s.%N)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$gw/status")
kill -TERM "$gw"; wait "$gw" || true

line=$(grep "Gateway stopped" "$work/edge.log" | sed 's/\x1b\[[0-9;]*m//g')
field() { echo "$line" | grep -o "$1=[0-9]*" | cut -d= -f2; }
appended=$(field appended); payload=$(field payload_bytes); file=$(field file_bytes); fsyncs=$(field fsyncs)
stored=$(curl -s -H 'Authorization: Bearer bench' -X POST "http://127.0.0.1:$http/api/v1/sql" \
  -d '{"sql":"SELECT count(*) AS n FROM elevator_readings"}' | grep -o '"n":[0-9]*' | cut -d: -f2)

python3 - "$SECS" "$DEVICES" "$SYNC_MS" "$c0" "$c1" "$t0" "$t1" "$tick" "$sum" "$n" "$max" "$hwm" "$w0" "$w1" \
  "$appended" "$payload" "$file" "$fsyncs" "$stored" <<'PY'
import sys
(secs, devices, sync_ms, c0, c1, t0, t1, tick, rss_sum, rss_n, rss_max, hwm, w0, w1,
 appended, payload, file, fsyncs, stored) = sys.argv[1:]
wall = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(tick) / wall * 100
mean = int(rss_sum) / int(rss_n) / 1024
disk = int(w1) - int(w0)
# payload and file bytes are for the whole run (10 s warm-up included);
# disk bytes for the measured window only: scale payload to that window.
print(f"| devices | sync_ms | window | messages | CPU (one core) | RSS mean | RSS max | peak (VmHWM) | vs Neuron's 10 MB | spool file bytes / payload | disk bytes / payload | fsyncs/s |")
print(f"|---|---|---|---|---|---|---|---|---|---|---|---|")
run_s = wall + 10
payload_window = int(payload) * wall / run_s
print(f"| {devices} | {sync_ms} | {wall:.0f} s | {appended} spooled, {stored} stored | {cpu:.2f} % | {mean:.1f} MiB | {int(rss_max)/1024:.1f} MiB | {int(hwm)/1024:.1f} MiB | {int(rss_max)/1024/10:.2f} × | {int(file)/int(payload):.2f} | {disk/payload_window:.1f} | {int(fsyncs)/run_s:.1f} |")
PY
echo "(work dir: $work)"
