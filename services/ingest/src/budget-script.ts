/**
 * One client's bounds, checked and charged in one step so that replicas never over-admit.
 * KEYS: 1 rate hash, 2 stored zset (message id -> expiry ms), 3 sizes hash (message id -> bytes),
 *       4 stored-bytes counter, 5 owner hash (message id -> client, shared by all clients),
 *       6 recipient counter of the current hour, 7 the message's charged marker.
 * ARGV: now ms, message id, client, size, recipients, messages/s, bytes/s, max stored messages,
 *       max stored bytes, daily recipients, expiry ms, hour-key prefix, hour index.
 * Rates are token buckets holding one second's worth; a message larger than the bucket passes
 * when the bucket is full and leaves it in debt, so a client's average never exceeds its rate.
 * Returns "" when admitted, else the name of the limit reached.
 */
export const CHARGE_SCRIPT = `
local now = tonumber(ARGV[1])
local id, client = ARGV[2], ARGV[3]
local size, rcpt = tonumber(ARGV[4]), tonumber(ARGV[5])
local mps, bps = tonumber(ARGV[6]), tonumber(ARGV[7])
local maxMsgs, maxBytes, daily = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local expiry, hourPrefix, hour = tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])

-- Charged already (a retry with the same idempotency key, after a crash or a failed store): not
-- twice, whatever limits the client has.
if redis.call('EXISTS', KEYS[7]) == 1 then return '' end

local function refill(field, rate)
  local cap = math.max(rate, 1)
  local t = redis.call('HMGET', KEYS[1], field, field .. ':at')
  local tokens, at = tonumber(t[1]), tonumber(t[2])
  if not tokens then return cap end
  return math.min(cap, tokens + (now - at) / 1000 * rate)
end

local m, b
if mps > 0 then
  m = refill('m', mps)
  if m < 1 then return 'messages_per_second' end
end
if bps > 0 then
  b = refill('b', bps)
  if b < math.min(size, math.max(bps, 1)) then return 'bytes_per_second' end
end

-- Stored messages past their expiry were lost track of (a release missed): drop them.
if maxMsgs > 0 or maxBytes > 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, gone in ipairs(old) do
    local n = tonumber(redis.call('HGET', KEYS[3], gone) or '0')
    redis.call('DECRBY', KEYS[4], n)
    redis.call('HDEL', KEYS[3], gone)
    redis.call('HDEL', KEYS[5], gone)
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
  if maxMsgs > 0 and redis.call('ZCARD', KEYS[2]) + 1 > maxMsgs then return 'max_stored_messages' end
  if maxBytes > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') + size > maxBytes then return 'max_stored_bytes' end
end

if daily > 0 then
  local used = 0
  for h = hour - 23, hour do used = used + tonumber(redis.call('GET', hourPrefix .. h) or '0') end
  if used + rcpt > daily then return 'daily_recipients' end
end

if mps > 0 then redis.call('HSET', KEYS[1], 'm', m - 1, 'm:at', now) end
if bps > 0 then redis.call('HSET', KEYS[1], 'b', b - size, 'b:at', now) end
if mps > 0 or bps > 0 then redis.call('PEXPIRE', KEYS[1], 3600000) end
if maxMsgs > 0 or maxBytes > 0 then
  redis.call('ZADD', KEYS[2], expiry, id)
  redis.call('HSET', KEYS[3], id, size)
  redis.call('INCRBY', KEYS[4], size)
  redis.call('HSET', KEYS[5], id, client)
end
if daily > 0 then
  redis.call('INCRBY', KEYS[6], rcpt)
  redis.call('PEXPIRE', KEYS[6], 90000000)
end
redis.call('SET', KEYS[7], '1', 'PX', math.max(expiry - now, 1000))
return ''
`;

/**
 * Gives back a message's share of its client's stored quota; nothing when it holds none (already
 * released, or its client has no quota). KEYS: 1 owner hash. ARGV: message id, client key prefix.
 */
export const RELEASE_SCRIPT = `
local client = redis.call('HGET', KEYS[1], ARGV[1])
if not client then return 0 end
local base = ARGV[2] .. client
local n = tonumber(redis.call('HGET', base .. ':sizes', ARGV[1]) or '0')
redis.call('ZREM', base .. ':stored', ARGV[1])
redis.call('HDEL', base .. ':sizes', ARGV[1])
redis.call('DECRBY', base .. ':stored-bytes', n)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`;
