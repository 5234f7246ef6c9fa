-- driftline: record which partition each entity's events arrive on (the serving reads' entity -> partition index).
-- KEYS[1..n]  index keys of one bucket (they share the {ix:<topic>:<bucket>} hash tag / cluster slot)
-- ARGV[1]     the partition (ASCII decimal) every KEYS entity was just consumed from
-- ARGV[2]     TTL in ms
-- Sets each key to ARGV[1] with the TTL. Returns {i, previous, ...} for every key that named another partition:
-- that entity's events arrived on two partitions (a producer changed its partitioner, or partitions were added).
local moved = {}
for i = 1, #KEYS do
  local old = redis.call('GET', KEYS[i])
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  if old and old ~= ARGV[1] then
    moved[#moved + 1] = i
    moved[#moved + 1] = old
  end
end
return moved
