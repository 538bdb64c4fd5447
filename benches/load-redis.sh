#!/usr/bin/env bash
# Load benchmark of the Redis store: bare Axum against tower-bouncer with its rate limit in
# Redis (examples/load_target.rs --mode redis; --mode peer, the in-memory store, for
# reference), on the allow path (a quota nothing exceeds:
# every request is one round trip to Redis), on the deny path (1/min: a flood on one key,
# answered by the local deny cache) and on the latency path (the allow path with 2 connections:
# an unsaturated server), with the latency percentiles of wrk and the commands Redis ran
# (INFO commandstats).
#
#   benches/load-redis.sh            # 5 rounds of 5 s per run (about 5 minutes)
#   benches/load-redis.sh --quick    # 2 rounds of 2 s: a smoke run
#   benches/load-redis.sh --rounds 7 --duration 10
#
# Needs redis-server and redis-cli (Debian/Ubuntu: apt-get install -y redis-server), wrk and
# taskset. It starts its own redis-server on a free loopback port, pinned to one core, and
# stops it (by PID) on exit, also on failure or Ctrl-C. Every run gets a fresh load_target
# server (built once in release with --features redis) pinned to another core, an empty Redis
# (FLUSHALL) and wrk --latency; the modes alternate within each round (their order
# rotates from round to round). Prints, per path and mode, the median req/s with its min-max
# spread and its ratio to bare Axum of the same round, p50/p99 latencies, the p99 added by
# Redis (redis p99 - bare p99 of the same round), and the Redis commands per run, per second
# and per key per retry period. See benches/README.md.
set -euo pipefail
NAME=load-redis.sh
# shellcheck source=benches/load-common.sh
source "$(dirname "$0")/load-common.sh"

ROUNDS=5
DURATION=5
CONNECTIONS=32
# The "latency" path: the allow path with a few connections, so that the server is not
# saturated and its latency is the round trip's, not a queue's.
LATENCY_CONNECTIONS=2
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REDIS_CPU=${REDIS_CPU:-1}
# peer: the same layers over the in-memory store, for reference (the deny path's cost without
# Redis).
MODES=(bare peer redis)
PATHS=(allow deny latency)
ALLOW_QUOTA="1000000000/s"
DENY_QUOTA="1/min"
# The deny quota's retry period in seconds: one cell per minute.
DENY_PERIOD=60
# wrk connects from 127.0.0.1 only: the socket-peer key is one key for the whole run.
KEYS_PER_RUN=1

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --quick           2 rounds of 2 s
  --rounds N        rounds (default $ROUNDS; at least 1)
  --duration S      seconds per wrk run (default $DURATION)
  --connections N   wrk connections of the allow and deny paths (default $CONNECTIONS)
  --latency-connections N
                    wrk connections of the latency path (default $LATENCY_CONNECTIONS)
  -h, --help        this text
Environment: SERVER_CPU (default 0), CLIENT_CPU (default 1), REDIS_CPU (default 1),
CARGO_TARGET_DIR.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=2; DURATION=2 ;;
        --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
        --duration) DURATION=${2:?--duration needs a value}; shift ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift ;;
        --latency-connections) LATENCY_CONNECTIONS=${2:?--latency-connections needs a value}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "load-redis.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
require_positive "$ROUNDS" "$DURATION" "$CONNECTIONS" "$LATENCY_CONNECTIONS"
require_tools wrk taskset redis-server redis-cli
cd "$(dirname "$0")/.."

echo "building examples/load_target.rs (release, --features redis)..." >&2
BIN="$WORK/load_target"
cp "$(build_target redis)" "$BIN"

REDIS_PID=""
stop_redis() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
}
# Called by load-common.sh's exit trap, after the load_target server is stopped.
cleanup_extra() {
    stop_redis
}

# --- Redis: a server of our own on a free loopback port (a few random tries, bounded). ---
REDIS_PORT=""
for attempt in $(seq 1 20); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
        continue # something answers there already
    fi
    mkdir -p "$WORK/redis"
    taskset -c "$REDIS_CPU" redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no --dir "$WORK/redis" --loglevel warning \
        >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            REDIS_PORT=$port
            break
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$REDIS_PORT" ] && break
    stop_redis # the port was taken, or the server did not come up: try another
done
if [ -z "$REDIS_PORT" ]; then
    echo "load-redis.sh: could not start redis-server:" >&2
    cat "$WORK/redis.log" >&2
    exit 1
fi
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# Script calls (EVALSHA + EVAL) Redis has run since it started.
script_calls() {
    rcli info commandstats | tr -d '\r' \
        | awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ { calls += $3 } END { print calls + 0 }'
}
# Redis' CPU time (user + system) in clock ticks.
redis_ticks() {
    sed 's/.*) //' "/proc/$REDIS_PID/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}

RESULTS="$WORK/results"
: >"$RESULTS"

# A wrk latency ("345.12us", "2.10ms", "1.02s") in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000
        else if (v ~ /s$/) print n * 1000000; else print n
    }'
}

# run_one PATH MODE ROUND: one fresh server, an empty Redis, one wrk run; appends
# "path mode round req/s non2xx requests errors server-cpu-us p50-us p99-us commands
# redis-cpu-us" to $RESULTS.
run_one() {
    local path=$1 mode=$2 round=$3 quota connections=$CONNECTIONS
    case "$path" in
        allow) quota=$ALLOW_QUOTA ;;
        deny) quota=$DENY_QUOTA ;;
        latency) quota=$ALLOW_QUOTA; connections=$LATENCY_CONNECTIONS ;;
    esac
    rcli flushall >/dev/null
    start_server "$mode" "$WORK/server.$round.$path.$mode.out" "$WORK/server.$round.$path.$mode.err" \
        --quota "$quota" --redis "$REDIS_URL"

    local calls_before ticks_before
    calls_before=$(script_calls)
    ticks_before=$(redis_ticks)
    run_wrk "$mode" "$connections" --latency
    local calls_after ticks_after ticks
    calls_after=$(script_calls)
    ticks_after=$(redis_ticks)
    ticks=$(server_ticks)
    stop_server

    read_wrk
    local p50 p99
    p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")
    if [ -z "$p50" ] || [ -z "$p99" ]; then
        echo "load-redis.sh: could not read wrk's latencies:" >&2
        cat "$WORK/wrk.out" >&2
        exit 1
    fi
    p50=$(to_us "$p50")
    p99=$(to_us "$p99")
    local commands=$((calls_after - calls_before))
    local cpu_us redis_cpu_us
    cpu_us=$(per_request_us "$ticks" "$REQUESTS")
    redis_cpu_us=$(per_request_us "$((ticks_after - ticks_before))" "$REQUESTS")
    echo "$path $mode $round $RPS $NON2XX $REQUESTS $ERRORS $cpu_us $p50 $p99 $commands $redis_cpu_us" >>"$RESULTS"
    printf '  round %d  %-5s %-5s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  %8d redis commands  (%s of %s non-2xx)\n' \
        "$round" "$path" "$mode" "$RPS" "$p50" "$p99" "$commands" "$NON2XX" "$REQUESTS" >&2
}

echo "load_target: $BIN" >&2
echo "redis-server: 127.0.0.1:$REDIS_PORT (PID $REDIS_PID) on CPU $REDIS_CPU; $(redis-server --version | head -n 1)" >&2
echo "rounds $ROUNDS, ${DURATION}s per run, wrk -t1 -c$CONNECTIONS (latency path: -c$LATENCY_CONNECTIONS) on CPU $CLIENT_CPU, server on CPU $SERVER_CPU" >&2
each_run run_one

echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, redis-server on CPU $REDIS_CPU"
echo "allow: --quota $ALLOW_QUOTA; deny: --quota $DENY_QUOTA (retry period ${DENY_PERIOD} s, $KEYS_PER_RUN key);"
echo "latency: the allow quota with wrk -c$LATENCY_CONNECTIONS (an unsaturated server: the round trip's latency)"
awk -v modes="${MODES[*]}" -v paths="${PATHS[*]}" -v duration="$DURATION" \
    -v period="$DENY_PERIOD" -v keys="$KEYS_PER_RUN" "$AWK_MEDIAN"'
    function spread(values, n, format,    i, lo, hi) {
        lo = values[1]; hi = values[1]
        for (i = 2; i <= n; i++) { if (values[i] < lo) lo = values[i]; if (values[i] > hi) hi = values[i] }
        return sprintf(format " - " format, lo, hi)
    }
    {
        key = $1 SUBSEP $2 SUBSEP $3
        rps[key] = $4; non2xx[$1, $2] += $5; total[$1, $2] += $6; errors[$1, $2] += $7
        cpu[key] = $8; p50[key] = $9; p99[key] = $10; commands[key] = $11; rcpu[key] = $12
        rounds[$3] = 1
    }
    END {
        split(modes, mode_list, " "); split(paths, path_list, " ")
        # Periods a run touches: a run shorter than the retry period is within one.
        periods = duration / period; if (periods < 1) periods = 1
        printf "%-7s %-5s %10s %19s %7s %13s %8s %8s %10s %19s %10s %10s %9s %11s %8s %6s\n", \
            "path", "mode", "req/s", "min - max", "x bare", "x bare range", "p50 us", "p99 us", \
            "p99 added", "p99 added range", "CPU x bare", "redis cmd", "cmd/s", "cmd/key/per", "non-2xx", "errors"
        for (p = 1; p in path_list; p++) {
            path = path_list[p]
            for (m = 1; m in mode_list; m++) {
                mode = mode_list[m]; n = 0; k = 0; a = 0
                delete v; delete x; delete l50; delete l99; delete added; delete cmds; delete cx; q = 0
                for (r in rounds) {
                    if (!((path, mode, r) in rps)) continue
                    n++
                    v[n] = rps[path, mode, r]; l50[n] = p50[path, mode, r]; l99[n] = p99[path, mode, r]
                    cmds[n] = commands[path, mode, r]
                    if ((path, "bare", r) in rps && rps[path, "bare", r] > 0) {
                        x[++k] = v[n] / rps[path, "bare", r]
                        added[++a] = p99[path, mode, r] - p99[path, "bare", r]
                        if (cpu[path, "bare", r] > 0) cx[++q] = cpu[path, mode, r] / cpu[path, "bare", r]
                    }
                }
                if (n == 0) continue
                share = total[path, mode] ? 100 * non2xx[path, mode] / total[path, mode] : 0
                c = median(cmds, n)
                printf "%-7s %-5s %10.0f %19s %6.2fx %13s %8.0f %8.0f %10.0f %19s %9.2fx %10.0f %9.1f %11.1f %7.1f%% %6d\n", \
                    path, mode, median(v, n), spread(v, n, "%.0f"), median(x, k), spread(x, k, "%.2f"), \
                    median(l50, n), median(l99, n), median(added, a), spread(added, a, "%.0f"), \
                    (q ? median(cx, q) : 0), \
                    c, c / duration, c / keys / periods, share, errors[path, mode]
            }
        }
    }' "$RESULTS"
echo
echo "x bare: median over rounds of (req/s) / (bare req/s of the same round), and its range."
echo "p99 added: median over rounds of (p99) - (bare p99 of the same round), in microseconds."
echo "CPU x bare: median over rounds of the server's CPU per request / bare's (steadier than req/s)."
echo "redis cmd: EVALSHA + EVAL calls during the run (INFO commandstats), median over rounds;"
echo "cmd/s: per second of the run; cmd/key/per: per key per retry period of the deny quota"
echo "(a run shorter than the period counts as one period)."
echo "per run (path mode round req/s non-2xx requests socket-errors server-CPU-us/request"
echo "p50-us p99-us redis-commands redis-CPU-us/request):"
sort -k1,1 -k2,2 -k3,3n "$RESULTS"
