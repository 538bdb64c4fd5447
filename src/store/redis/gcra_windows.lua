-- GCRA over several windows at once for tower-bouncer's Redis store: the arithmetic of
-- src/store/gcra.rs (`Windows`), step for step, as gcra.lua does it for one window (after
-- gcra_common.lua, which the store prepends). A request
-- is allowed only if every window allows it; then every window is charged. A denial writes
-- nothing anywhere.
--
-- KEYS[1..n]  the windows' buckets, in the order of the windows. The caller names them with a
--             shared hash tag ("prefix{key}#i"), so all of them live in one Cluster slot.
-- ARGV[1]     n: the number of windows (= #KEYS)
-- ARGV[2]     the cost in cells (1 <= cost <= every burst; the caller denies larger costs)
-- ARGV[1+2i], ARGV[2+2i]  T and tau of window i (1-based), in nanoseconds
-- ARGV[3+2n]  optional, tests only: now, whole seconds since the Unix epoch
-- ARGV[4+2n]  optional, tests only: now, nanoseconds within that second
--
-- Each bucket holds its window's TAT as "SECONDS NANOSECONDS" on Redis' clock, and expires
-- when that window is full again (an expired window decides like an absent one).
--
-- Returns {allowed, before_1, after_1, ..., before_n, after_n}: 1 or 0, then each window's
-- TAT before and after the decision, relative to now, clamped at 0, in nanoseconds.

local n = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local now_s, now_ns, simulated = clock(ARGV[3 + 2 * n], ARGV[4 + 2 * n])

local before = {}
local allowed = true
for i = 1, n do
  local t = tonumber(ARGV[1 + 2 * i])
  local tau = tonumber(ARGV[2 + 2 * i])
  local tat = relative_tat(redis.call('GET', KEYS[i]), now_s, now_ns)
  before[i] = tat
  -- Allowed when now >= TAT + T*(cost - 1) - tau.
  if tat + t * (cost - 1) > tau then
    allowed = false
  end
end

local reply = {allowed and 1 or 0}
if not allowed then
  for i = 1, n do
    reply[2 * i] = before[i]
    reply[2 * i + 1] = before[i]
  end
  return reply
end

for i = 1, n do
  local t = tonumber(ARGV[1 + 2 * i])
  local after = before[i] + t * cost
  write_bucket(KEYS[i], after, now_s, now_ns, simulated)
  reply[2 * i] = before[i]
  reply[2 * i + 1] = after
end
return reply
