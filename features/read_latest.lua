-- driftline: the latest vectors of some entities of one (topic, partition) (serving reads: features.redis_reads).
-- KEYS[1..n]     the entities' state hashes; KEYS[n+1..2n] their former latest-vector string keys (same slot)
-- ARGV[1]        the hash field of the latest vector (features.keys.LATEST_FIELD)
-- Returns the n vectors in KEYS order (nil: none): the hash's field, else the former string (written by a worker
-- older than the field, until it expires).
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local v = redis.call('HGET', KEYS[i], ARGV[1])
  if not v then v = redis.call('GET', KEYS[n + i]) end
  out[i] = v
end
return out
