-- The control ledger of one model scope, in one Redis Cluster slot (every key carries {ctl:<model>:<uid>}).
-- KEYS: 1 state (hash: seq, revision, state), 2 history (list), 3 cmd:<command_id> (string), 4 acks:<command_id> (hash)
-- ARGV[1] = op: look | record | claim (see streams/control/redis_store.py)
local op = ARGV[1]
if op == 'look' then
  -- ARGV: 2 instance -> {entry or nil, acked (0|1), seq or nil, state json or nil}
  local st = redis.call('HMGET', KEYS[1], 'seq', 'state')
  return {redis.call('GET', KEYS[3]), redis.call('HEXISTS', KEYS[4], ARGV[2]), st[1], st[2]}
elseif op == 'record' then
  -- ARGV: 2 expected seq, 3 entry json, 4 ttl ms, 5 instance, 6 ack json, 7 state json or '', 8 revision,
  --       9 history line or '', 10 history max  ->  {'seen', entry} | {'conflict', seq} | {'recorded', seq}
  local seen = redis.call('GET', KEYS[3])
  if seen then return {'seen', seen} end
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  if seq ~= tonumber(ARGV[2]) then return {'conflict', tostring(seq)} end
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  redis.call('HSET', KEYS[1], 'seq', seq + 1)
  if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[1], 'state', ARGV[7], 'revision', ARGV[8])
    if ARGV[9] ~= '' then
      redis.call('RPUSH', KEYS[2], ARGV[9])
      redis.call('LTRIM', KEYS[2], -tonumber(ARGV[10]), -1)
    end
  end
  return {'recorded', tostring(seq + 1)}
elseif op == 'claim' then
  -- ARGV: 2 instance, 3 ack json, 4 ttl ms  ->  1 (marked now) | 0 (already marked)
  local added = redis.call('HSETNX', KEYS[4], ARGV[2], ARGV[3])
  if added == 1 and redis.call('PTTL', KEYS[4]) < 0 then redis.call('PEXPIRE', KEYS[4], ARGV[4]) end
  return added
end
return redis.error_reply('ledger.lua: unknown op ' .. tostring(op))
