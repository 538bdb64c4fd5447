#!/usr/bin/env bash
# End-to-end load benchmark: bare Axum, tower-bouncer (socket-peer source; trusted
# X-Forwarded-For source) and tower_governor 0.8 with the same quota, on the allow path (a quota
# nothing exceeds) and on the deny path (1/min: nearly every request is a 429).
#
#   benches/load.sh            # 5 rounds of 5 s per run (about 4 minutes)
#   benches/load.sh --quick    # 2 rounds of 2 s: a smoke run
#   benches/load.sh --rounds 7 --duration 10
#   benches/load.sh --modes "bare xff-plain xff-metrics" --paths allow
#                              # the cost of misconfiguration detection and metrics
#
# Needs wrk (Debian/Ubuntu: apt-get install -y wrk) and taskset (util-linux). Every run gets a
# fresh server (examples/load_target.rs, built once in release) pinned to one core, and wrk
# pinned to another; the modes are interleaved within each round (their order rotates from
# round to round), so a slow moment of the machine hits every mode alike. Prints, per path and
# mode, the median req/s with its min-max spread and the ratio to bare Axum of the same round
# (the median of the per-round ratios). See benches/README.md.
set -euo pipefail
NAME=load.sh
# shellcheck source=benches/load-common.sh
source "$(dirname "$0")/load-common.sh"

ROUNDS=5
DURATION=5
CONNECTIONS=32
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MODES=(bare peer xff governor)
PATHS=(allow deny)
PLACEMENT=outer
ALLOW_QUOTA="1000000000/s"
DENY_QUOTA="1/min"
# The client address the X-Forwarded-For source resolves (loopback, the peer, is trusted).
# Every mode gets the same request, header included: only the middleware differs.
CLIENT_IP="203.0.113.7"

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --quick           2 rounds of 2 s
  --rounds N        rounds (default $ROUNDS; at least 1)
  --duration S      seconds per wrk run (default $DURATION)
  --connections N   wrk connections (default $CONNECTIONS)
  --modes "M ..."   modes to compare (default "${MODES[*]}"; bare is always added):
                    bare peer xff xff-plain xff-metrics governor (see load_target --help)
  --paths "P ..."   allow, deny or both (default "${PATHS[*]}")
  --placement P     outer (default: the middleware wraps the whole Router) or router
                    (Router::layer, after routing); every middleware mode alike
  -h, --help        this text
Environment: SERVER_CPU (default 0), CLIENT_CPU (default 1), CARGO_TARGET_DIR.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=2; DURATION=2 ;;
        --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
        --duration) DURATION=${2:?--duration needs a value}; shift ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift ;;
        --modes) read -r -a MODES <<<"${2:?--modes needs a value}"; shift ;;
        --paths) read -r -a PATHS <<<"${2:?--paths needs a value}"; shift ;;
        --placement) PLACEMENT=${2:?--placement needs a value}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "load.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
require_positive "$ROUNDS" "$DURATION" "$CONNECTIONS"

case "$PLACEMENT" in
    outer|router) ;;
    *) echo "load.sh: --placement is outer or router" >&2; exit 2 ;;
esac
for mode in "${MODES[@]}"; do
    case "$mode" in
        bare|peer|xff|xff-plain|xff-metrics|governor) ;;
        *) echo "load.sh: unknown mode '$mode'" >&2; exit 2 ;;
    esac
done
for path in "${PATHS[@]}"; do
    case "$path" in
        allow|deny) ;;
        *) echo "load.sh: unknown path '$path'" >&2; exit 2 ;;
    esac
done
# Bare Axum is the reference of every ratio: always measured, first in the list.
MODES=(bare $(printf '%s\n' "${MODES[@]}" | grep -vx bare | awk '!seen[$0]++'))

require_tools wrk taskset
cd "$(dirname "$0")/.."
# With xff-metrics among the modes, every mode runs the build with the metrics feature: one
# binary, so that the modes differ by their configuration only (xff-plain: detection off and
# no recorder), not by the code layout of two builds.
FEATURES=""
if printf '%s\n' "${MODES[@]}" | grep -qx xff-metrics; then
    FEATURES=metrics
fi
echo "building examples/load_target.rs (release${FEATURES:+, --features $FEATURES})..." >&2
BIN="$WORK/load_target"
cp "$(build_target "$FEATURES")" "$BIN"

RESULTS="$WORK/results"
: >"$RESULTS"

# run_one PATH MODE ROUND: one fresh server, one wrk run; appends
# "path mode round req/s non2xx requests errors server-cpu-us" to $RESULTS.
run_one() {
    local path=$1 mode=$2 round=$3 quota
    case "$path" in
        allow) quota=$ALLOW_QUOTA ;;
        deny) quota=$DENY_QUOTA ;;
    esac
    start_server "$mode" "$WORK/server.$round.$path.$mode.out" "$WORK/server.$round.$path.$mode.err" \
        --quota "$quota" --placement "$PLACEMENT"
    run_wrk "$mode" "$CONNECTIONS" -H "X-Forwarded-For: $CLIENT_IP"
    local ticks cpu_us
    ticks=$(server_ticks)
    stop_server
    read_wrk
    cpu_us=$(per_request_us "$ticks" "$REQUESTS")
    echo "$path $mode $round $RPS $NON2XX $REQUESTS $ERRORS $cpu_us" >>"$RESULTS"
    printf '  round %d  %-5s %-9s %10.0f req/s  %6.2f µs server CPU/request  (%s of %s non-2xx)\n' \
        "$round" "$path" "$mode" "$RPS" "$cpu_us" "$NON2XX" "$REQUESTS" >&2
}

echo "load_target: $BIN${FEATURES:+ (features: $FEATURES)}; placement: $PLACEMENT" >&2
echo "rounds $ROUNDS, ${DURATION}s per run, wrk -t1 -c$CONNECTIONS on CPU $CLIENT_CPU, server on CPU $SERVER_CPU" >&2
each_run run_one

echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, placement $PLACEMENT"
echo "allow: --quota $ALLOW_QUOTA; deny: --quota $DENY_QUOTA"
awk -v modes="${MODES[*]}" -v paths="${PATHS[*]}" "$AWK_MEDIAN"'
    {
        rps[$1, $2, $3] = $4; non2xx[$1, $2] += $5; total[$1, $2] += $6; errors[$1, $2] += $7
        cpu[$1, $2, $3] = $8
        rounds[$3] = 1
    }
    END {
        split(modes, mode_list, " "); split(paths, path_list, " ")
        printf "%-6s %-9s %12s %21s %8s %15s %11s %10s %9s %7s\n", "path", "mode", "median req/s", "min - max req/s", "x bare", "x bare min-max", "CPU us/req", "CPU x bare", "non-2xx", "errors"
        for (p = 1; p in path_list; p++) {
            path = path_list[p]
            for (m = 1; m in mode_list; m++) {
                mode = mode_list[m]; n = 0; k = 0; lo = ""; hi = ""; rlo = ""; rhi = ""
                delete values; delete ratios; delete cpus; c = 0; delete cpu_ratios; q = 0
                for (r in rounds) {
                    if (!((path, mode, r) in rps)) continue
                    v = rps[path, mode, r]; values[++n] = v; cpus[++c] = cpu[path, mode, r]
                    if (lo == "" || v < lo) lo = v
                    if (hi == "" || v > hi) hi = v
                    if ((path, "bare", r) in rps && rps[path, "bare", r] > 0) {
                        x = v / rps[path, "bare", r]; ratios[++k] = x
                        if (cpu[path, "bare", r] > 0) cpu_ratios[++q] = cpu[path, mode, r] / cpu[path, "bare", r]
                        if (rlo == "" || x < rlo) rlo = x
                        if (rhi == "" || x > rhi) rhi = x
                    }
                }
                if (n == 0) continue
                share = total[path, mode] ? 100 * non2xx[path, mode] / total[path, mode] : 0
                printf "%-6s %-9s %12.0f %10.0f - %-10.0f %7.2fx %6.2f - %-6.2f %11.2f %9.2fx %8.1f%% %7d\n", path, mode, median(values, n), lo, hi, median(ratios, k), rlo, rhi, median(cpus, c), (q ? median(cpu_ratios, q) : 0), share, errors[path, mode]
            }
        }
    }' "$RESULTS"
echo
echo "CPU us/req: the server's CPU time (user + system, /proc) per request, median over rounds;"
echo "CPU x bare: the median over rounds of (CPU per request) / (bare Axum's CPU per request)."
echo "per run (path mode round req/s non-2xx requests socket-errors server-CPU-us/request):"
sort -k1,1 -k2,2 -k3,3n "$RESULTS"
