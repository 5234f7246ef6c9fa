-- driftline: atomic save of feature state guarded by the source offset (compare-and-set).
-- KEYS[1]      offset key; KEYS[2..n] entity state hashes (all share one hash tag / cluster slot)
-- ARGV[1]      expected stored offset (-1 = none yet)
-- ARGV[2]      new offset (must be >= stored)
-- ARGV[3]      new value of the offset key ("<offset>" or "<offset>:<watermark>")
-- ARGV[4]      TTL in ms for every entity key written
-- ARGV[5..]    per entity key, in KEYS order: nset, ndel, nset x (field, value), ndel x field;
--              nset = -1 means a string key: one value follows (SET), then ndel = 0
-- Returns {1, stored} on success, {0, stored} on a CAS mismatch, {-1, stored} on a backwards move;
-- nothing is written unless 1 is returned.
-- A hash's fields go in one HSET and one HDEL (in chunks of at most 1000 arguments: Lua's stack is bounded).
local raw = redis.call('GET', KEYS[1])
local stored = '-1'
if raw then stored = string.match(raw, '^%-?%d+') end
local cur = tonumber(stored)
if cur ~= tonumber(ARGV[1]) then return {0, stored} end
if tonumber(ARGV[2]) < cur then return {-1, stored} end
local ttl = ARGV[4]
local function each_chunk(command, key, first, count)  -- ARGV[first .. first + count - 1], 1000 at a time
  local last = first + count - 1
  while first <= last do
    local upto = math.min(first + 999, last)
    redis.call(command, key, unpack(ARGV, first, upto))
    first = upto + 1
  end
end
local a = 5
for i = 2, #KEYS do
  local key = KEYS[i]
  local nset = tonumber(ARGV[a])
  local ndel = tonumber(ARGV[a + 1])
  a = a + 2
  if nset == -1 then  -- a plain string value (the entity's latest feature vector), not a hash
    redis.call('SET', key, ARGV[a], 'PX', ttl)
    a = a + 1
  else
    if nset == 1 then  -- the common case, one bucket row: no chunk loop (each redis.call and Lua call costs)
      redis.call('HSET', key, ARGV[a], ARGV[a + 1])
    else
      each_chunk('HSET', key, a, 2 * nset)
    end
    a = a + 2 * nset
    if ndel > 0 then each_chunk('HDEL', key, a, ndel) end
    a = a + ndel
    redis.call('PEXPIRE', key, ttl)
  end
end
redis.call('SET', KEYS[1], ARGV[3])
return {1, stored}
