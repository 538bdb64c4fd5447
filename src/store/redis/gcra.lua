-- GCRA for tower-bouncer's Redis store: the arithmetic of src/store/gcra.rs, step for step,
-- in whole nanoseconds measured from "now" (after gcra_common.lua, which the store prepends).
--
-- One call decides a batch of single-window requests, in order, at one "now": the requests
-- that reached the store together (one request alone is a batch of one). A bucket may appear
-- several times; each of its requests sees the state the previous one left.
--
-- KEYS[i]          the bucket of request i (N = #KEYS requests)
-- ARGV[1]          R: the number of distinct rules in the batch (1 <= R <= 128)
-- ARGV[2r], ARGV[2r+1]   rule r (1-based): T, nanoseconds per cell (>= 1), and
--                  tau = T * (burst - 1)
-- ARGV[2R+1+i]     request i: n * 128 + (r - 1), its cost n in cells (1 <= n <= burst + 1;
--                  the caller denies larger costs) and its rule r
-- ARGV[2R+N+2]     optional, tests only: now, whole seconds since the Unix epoch
-- ARGV[2R+N+3]     optional, tests only: now, nanoseconds within that second
--
-- (A batch's requests mostly share one rule: sent once, it spares Redis two arguments to
-- intern and convert per request.)
--
-- Returns one number per request, in order: 2 * (TAT before - now) + 1 when allowed, 2 * (TAT
-- before - now) when denied (the TAT is unchanged), -1 when the bucket's name holds a value of
-- another type (not ours: neither read nor written). Times are clamped at 0, in nanoseconds;
-- the caller derives the TAT after an admission (before + T * n). One number rather than three
-- spares both sides most of the reply's encoding and parsing; it is exact because an admitted
-- request's TAT is below T * burst, which the caller keeps under 2^52. Each bucket is read once
-- and written at most once, after the batch, with its last state; a bucket whose requests
-- were all denied is not written.

local count = #KEYS
local rules = tonumber(ARGV[1])
-- ARGV index of the first request.
local first = 2 * rules + 2
local now_s, now_ns, simulated = clock(ARGV[first + count], ARGV[first + count + 1])
local periods, tolerances = {}, {}
for r = 1, rules do
  periods[r] = tonumber(ARGV[2 * r])
  tolerances[r] = tonumber(ARGV[2 * r + 1])
end

-- TAT relative to now per bucket, as the batch goes; false for a bucket of another type.
local tats = {}
-- The buckets to write, in the order of their first admitted request.
local written = {}
local dirty = {}
local reply = {}
for i = 1, count do
  local key = KEYS[i]
  local tat = tats[key]
  if tat == nil then
    local stored = redis.pcall('GET', key)
    if type(stored) == 'table' and stored.err then
      tat = false
    else
      tat = relative_tat(stored, now_s, now_ns)
    end
    tats[key] = tat
  end
  if tat == false then
    reply[i] = -1
  else
    local packed = tonumber(ARGV[first + i - 1])
    local rule = packed % 128
    local n = (packed - rule) / 128
    local t = periods[rule + 1]
    local tau = tolerances[rule + 1]
    -- Allowed when now >= TAT + T*(n - 1) - tau, i.e. TAT - now + T*(n - 1) <= tau.
    if tat + t * (n - 1) > tau then
      reply[i] = 2 * tat
    else
      local after = tat + t * n
      reply[i] = 2 * tat + 1
      tats[key] = after
      if not dirty[key] then
        dirty[key] = true
        written[#written + 1] = key
      end
    end
  end
end

for _, key in ipairs(written) do
  write_bucket(key, tats[key], now_s, now_ns, simulated)
end
return reply
