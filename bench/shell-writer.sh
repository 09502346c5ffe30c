#!/bin/sh
# The shell writer the hook is compared with: the pattern of bash telemetry
# hooks (flock, printf >> file, sync), as in the OpenVPN agent this product
# was first described after. Usage: shell-writer.sh DIR LINE
exec 9>>"$1/lock"
flock 9
printf '%s\n' "$2" >> "$1/queue.ndjson"
sync
