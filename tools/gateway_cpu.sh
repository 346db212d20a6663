#!/bin/bash
# CPU cost of JSON gateway requests: h2load --h1 sends N requests of one body to one
# route; the server's processes' utime+stime (the root pid and its children, i.e. a
# kvcore core and its workers, or one etcd) are summed before and after.
# usage: tools/gateway_cpu.sh <port> <server root pid> <route> <body file> <connections> [N]
# prints: route, connections, CPU ms per 1000 requests, and h2load's summary line
set -euo pipefail
P=$1; ROOT=$2; ROUTE=$3; BODY=$4; C=$5; N=${6:-6000}
HZ=$(getconf CLK_TCK)
ticks() {
    local t=0 s
    for p in $ROOT $(pgrep -P "$ROOT" || true); do
        s=$(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0)
        t=$((t + s))
    done
    echo $t
}
a=$(ticks)
out=$(h2load --h1 -n "$N" -c "$C" -d "$BODY" -H 'content-type: application/json' \
      "http://127.0.0.1:$P$ROUTE" 2>&1 | grep -E "^finished in" || true)
b=$(ticks)
echo "$ROUTE c=$C cpu_ms_per_1000=$(( (b - a) * 1000 * 1000 / HZ / N )) | $out"
