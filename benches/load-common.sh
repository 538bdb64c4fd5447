# Shared by benches/load.sh and benches/load-redis.sh (sourced, not run): the checks of the
# command line and the tools, the build of examples/load_target.rs, the scratch directory and
# the server started per run (stopped by PID on exit, also on failure or Ctrl-C), and the
# reading of wrk's output and of the server's CPU time.
#
# The sourcing script sets NAME (its name, for messages) first, and may define
# `cleanup_extra`, called on exit after the server is stopped (load-redis.sh stops its
# redis-server there).

# require_tools TOOL...: exits with the package to install for each missing tool.
require_tools() {
    local tool package missing=0
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            case "$tool" in
                taskset) package=util-linux ;;
                redis-server|redis-cli) package=redis-server ;;
                *) package=$tool ;;
            esac
            echo "$NAME: $tool is not installed. On Debian/Ubuntu: sudo apt-get install -y $package" >&2
            missing=1
        fi
    done
    [ "$missing" -eq 0 ] || exit 1
}

# require_positive VALUE...: exits unless every value is a positive integer.
require_positive() {
    local value
    for value in "$@"; do
        case "$value" in
            ''|*[!0-9]*|0) echo "$NAME: rounds, duration and connections must be positive integers" >&2; exit 2 ;;
        esac
    done
}

# build_target [FEATURES]: builds examples/load_target.rs in release, prints its path.
build_target() {
    local bin
    bin=$(cargo build --release --example load_target ${1:+--features "$1"} \
        --message-format=json-render-diagnostics \
        | grep -o '"executable":"[^"]*load_target"' | tail -n 1 | sed 's/^"executable":"//; s/"$//')
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "$NAME: could not find the built load_target executable" >&2
        exit 1
    fi
    echo "$bin"
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
WORK=$(mktemp -d)
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

cleanup() {
    stop_server
    if declare -F cleanup_extra >/dev/null; then
        cleanup_extra
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server MODE OUT ERR ARG...: starts load_target ($BIN) on SERVER_CPU in MODE with the
# arguments ARG..., on a free loopback port, its output in the files OUT and ERR (of their
# own per run: the shell truncates a redirected file in the child, after this function may
# already have read it); waits until it listens (10 s at most) and sets SERVER_PID and
# ADDRESS. --exit-after bounds the server's life even if the script is killed hard.
start_server() {
    local mode=$1 out=$2 err=$3 waited=0
    shift 3
    taskset -c "$SERVER_CPU" "$BIN" --mode "$mode" "$@" \
        --listen 127.0.0.1:0 --exit-after $((DURATION + 60)) \
        >"$out" 2>"$err" &
    SERVER_PID=$!
    while ! grep -q '^listening on .*:[0-9]' "$out" 2>/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$waited" -ge 100 ]; then
            echo "$NAME: the $mode server did not start:" >&2
            cat "$err" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    ADDRESS=$(sed -n 's/^listening on //p' "$out" | head -n 1)
}

# run_wrk MODE CONNECTIONS ARG...: wrk on CLIENT_CPU against $ADDRESS for DURATION seconds
# (bounded by timeout), its output in $WORK/wrk.out.
run_wrk() {
    local mode=$1 connections=$2
    shift 2
    timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$connections" -d"${DURATION}s" --timeout 5s "$@" \
        "http://$ADDRESS/" >"$WORK/wrk.out" 2>&1 || {
        echo "$NAME: wrk failed against the $mode server:" >&2
        cat "$WORK/wrk.out" >&2
        exit 1
    }
}

# server_ticks: the server's CPU time (user + system, in clock ticks) over its whole life,
# read before it is stopped: CPU per request is steadier than req/s on a shared machine.
server_ticks() {
    sed 's/.*) //' "/proc/$SERVER_PID/stat" 2>/dev/null | awk '{print $12 + $13}' || echo ""
}

# read_wrk: sets RPS, REQUESTS, NON2XX and ERRORS from $WORK/wrk.out (exits if unreadable).
read_wrk() {
    RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
    REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$WORK/wrk.out")
    ERRORS=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$WORK/wrk.out")
    NON2XX=${NON2XX:-0}
    ERRORS=${ERRORS:-0}
    if [ -z "$RPS" ] || [ -z "$REQUESTS" ]; then
        echo "$NAME: could not read wrk's output:" >&2
        cat "$WORK/wrk.out" >&2
        exit 1
    fi
}

# per_request_us TICKS REQUESTS: clock ticks of CPU time, in microseconds per request.
per_request_us() {
    awk -v ticks="${1:-0}" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", ticks * 1e6 / hz / n }'
}

# each_run RUN: calls `RUN PATH MODE ROUND` for every round, path and mode; within a round the
# modes' order rotates, so that a slow moment of the machine hits every mode alike.
each_run() {
    local run=$1 round path index count=${#MODES[@]}
    for round in $(seq 1 "$ROUNDS"); do
        for path in "${PATHS[@]}"; do
            for index in $(seq 0 $((count - 1))); do
                "$run" "$path" "${MODES[$(((index + round - 1) % count))]}" "$round"
            done
        done
    done
}

# The median of values[1..n], for the summaries' awk programs (prepended to them).
AWK_MEDIAN='
    function median(values, n,    i, j, t) {
        for (i = 2; i <= n; i++) {
            t = values[i]
            for (j = i - 1; j >= 1 && values[j] > t; j--) values[j + 1] = values[j]
            values[j + 1] = t
        }
        return (n % 2) ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }'
