#!/bin/bash
# The job the hook does, done the way the seed's OpenVPN telemetry writer
# does it (bash, flock, a seq file, printf >> queue, sync): number the event
# under the lock, give it an id and a time, append one NDJSON line, make it
# durable. Usage: shell-writer-seed.sh DIR USERNAME
set -eu
dir=$1
exec 9>>"$dir/writer.lock"
flock -w 5 9
seq=$(( $(cat "$dir/seq" 2>/dev/null || echo 0) + 1 ))
printf '%s\n' "$seq" > "$dir/seq"
id=$(cat /proc/sys/kernel/random/uuid)
now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
printf '{"v":1,"event_id":"%s","seq":%s,"type":"connect","time":"%s","session":{"username":"%s"}}\n' \
	"$id" "$seq" "$now" "$2" >> "$dir/queue.ndjson"
sync
