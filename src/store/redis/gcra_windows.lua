-- GCRA over several windows at once for tower-bouncer's Redis store: the arithmetic of
-- src/store/gcra.rs (`Windows`), step for step, as gcra.lua does it for one window. A request
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
local now_s, now_ns
local simulated = ARGV[3 + 2 * n] ~= nil
if simulated then
  now_s = tonumber(ARGV[3 + 2 * n])
  now_ns = tonumber(ARGV[4 + 2 * n])
else
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local time = redis.call('TIME')
  now_s = tonumber(time[1])
  now_ns = tonumber(time[2]) * 1000
end

local before = {}
local allowed = true
for i = 1, n do
  local t = tonumber(ARGV[1 + 2 * i])
  local tau = tonumber(ARGV[2 + 2 * i])
  local tat = 0
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local s, ns = string.match(stored, '^(%d+) (%d+)$')
    if s then
      tat = (tonumber(s) - now_s) * 1000000000 + (tonumber(ns) - now_ns)
      if tat < 0 then
        tat = 0
      end
    end
  end
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
  local total_ns = now_ns + after
  local carry = math.floor(total_ns / 1000000000)
  local at_ns = total_ns - carry * 1000000000
  if at_ns < 0 then
    carry = carry - 1
    at_ns = at_ns + 1000000000
  elseif at_ns >= 1000000000 then
    carry = carry + 1
    at_ns = at_ns - 1000000000
  end
  -- Integers formatted as integers (Lua would print 1e+08).
  local value = string.format('%d %d', now_s + carry, at_ns)
  if simulated then
    redis.call('SET', KEYS[i], value)
  else
    local ttl_ms = math.floor(after / 1000000)
    if ttl_ms * 1000000 < after then
      ttl_ms = ttl_ms + 1
    end
    redis.call('SET', KEYS[i], value, 'PX', string.format('%d', ttl_ms))
  end
  reply[2 * i] = before[i]
  reply[2 * i + 1] = after
end
return reply
