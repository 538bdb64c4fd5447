-- The steps shared by tower-bouncer's two Redis scripts, gcra.lua (one window, batches of
-- requests) and gcra_windows.lua (several windows): the store prepends this file to each.
--
-- A bucket holds its theoretical arrival time (TAT) as "SECONDS NANOSECONDS" since the Unix
-- epoch on Redis' own clock. Times the scripts compute with are whole nanoseconds relative to
-- "now", far below 2^53, where Lua's doubles are exact integers (the caller checks that the
-- quota keeps them there).

-- "now" as (seconds, nanoseconds, simulated): the explicit time of a test when `seconds` is
-- given, else Redis' clock, the same for every instance of the application.
local function clock(seconds, nanos)
  if seconds ~= nil then
    return tonumber(seconds), tonumber(nanos), true
  end
  -- Effects replication makes a write after TIME safe (the default from Redis 5; required
  -- before it).
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local time = redis.call('TIME')
  return tonumber(time[1]), tonumber(time[2]) * 1000, false
end

-- The TAT of a stored bucket relative to now, clamped at 0: an absent (false), malformed or
-- past TAT is "now" (see src/store/gcra.rs).
local function relative_tat(stored, now_s, now_ns)
  if not stored then
    return 0
  end
  local s, ns = string.match(stored, '^(%d+) (%d+)$')
  if not s then
    return 0
  end
  local tat = (tonumber(s) - now_s) * 1000000000 + (tonumber(ns) - now_ns)
  if tat < 0 then
    return 0
  end
  return tat
end

-- Writes a bucket whose TAT is `after` nanoseconds from now. It expires when the bucket is full
-- again (an expired key decides exactly like an absent one), rounded up to the millisecond;
-- with a simulated "now" (which has nothing to do with Redis' expiry clock) it never expires.
local function write_bucket(key, after, now_s, now_ns, simulated)
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
  -- Integers are formatted as integers: Lua's default would print 1e+08 (which Redis 7.2
  -- passed on to PX, and broke it).
  local value = string.format('%d %d', now_s + carry, at_ns)
  if simulated then
    redis.call('SET', key, value)
    return
  end
  local ttl_ms = math.floor(after / 1000000)
  if ttl_ms * 1000000 < after then
    ttl_ms = ttl_ms + 1
  end
  redis.call('SET', key, value, 'PX', string.format('%d', ttl_ms))
end

