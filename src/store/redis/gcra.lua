-- GCRA for tower-bouncer's Redis store: the arithmetic of src/store/gcra.rs, step for step,
-- in whole nanoseconds measured from "now" (relative times stay far below 2^53, where Lua's
-- doubles are exact integers; the caller checks that the quota keeps them there).
--
-- KEYS[1]  the bucket
-- ARGV[1]  T:    nanoseconds per cell (>= 1)
-- ARGV[2]  tau:  T * (burst - 1)
-- ARGV[3]  n:    the cost in cells (1 <= n <= burst; the caller denies larger costs itself)
-- ARGV[4]  optional, tests only: now, whole seconds since the Unix epoch
-- ARGV[5]  optional, tests only: now, nanoseconds within that second
--
-- The bucket holds the theoretical arrival time (TAT) as "SECONDS NANOSECONDS" since the Unix
-- epoch on Redis' own clock, and expires when the bucket is full again (TAT <= now): an
-- expired key decides exactly like an absent one. With an explicit "now" (a simulated time that
-- has nothing to do with Redis' expiry clock) the bucket is written without expiry.
--
-- Returns {allowed (1 or 0), TAT before - now, TAT after - now}, both clamped at 0, in
-- nanoseconds. A denial writes nothing.

local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local now_s, now_ns
local simulated = ARGV[4] ~= nil
if simulated then
  now_s = tonumber(ARGV[4])
  now_ns = tonumber(ARGV[5])
else
  -- Redis' clock, the same for every instance of the application. Effects replication makes
  -- a write after TIME safe (the default from Redis 5; required before it).
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local time = redis.call('TIME')
  now_s = tonumber(time[1])
  now_ns = tonumber(time[2]) * 1000
end

-- TAT relative to now; an absent, malformed or past TAT is "now" (see gcra.rs).
local tat = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local s, ns = string.match(stored, '^(%d+) (%d+)$')
  if s then
    tat = (tonumber(s) - now_s) * 1000000000 + (tonumber(ns) - now_ns)
    if tat < 0 then
      tat = 0
    end
  end
end

-- Allowed when now >= TAT + T*(n - 1) - tau, i.e. TAT - now + T*(n - 1) <= tau.
if tat + t * (n - 1) > tau then
  return {0, tat, tat}
end

local after = tat + t * n
-- Back to an absolute time, carried into whole seconds. The division is a double: correct
-- the quotient by one where it rounded across an integer.
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
-- Integers are formatted as integers: Lua's default would print 1e+08 (which Redis 7.2 passed
-- on to PX, and broke it).
local value = string.format('%d %d', now_s + carry, at_ns)
if simulated then
  redis.call('SET', KEYS[1], value)
else
  -- The key lives until the bucket is full again, rounded up to the millisecond.
  local ttl_ms = math.floor(after / 1000000)
  if ttl_ms * 1000000 < after then
    ttl_ms = ttl_ms + 1
  end
  redis.call('SET', KEYS[1], value, 'PX', string.format('%d', ttl_ms))
end
return {1, tat, after}
