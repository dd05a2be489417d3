/**
 * One atomic decision per message, on Redis' own clock so every replica agrees on time.
 *
 * KEYS: 1 window zset (grant time per message), 2 day zset (member "id|recipients"),
 *       3 totals hash (rcpt, msgs over the day window), 4 epoch (present once state is known)
 * ARGV: 1 interval ms, 2 batch size (0 = none), 3 day window ms, 4 recipient cap (0 = none),
 *       5 message cap (0 = none), 6 member, 7 recipients
 * Returns { waitMs, reason, now }: waitMs 0 = granted (and recorded); -1 = state must be rebuilt.
 */
export const ACQUIRE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[4]) == 0 then return {-1, 'rebuild', now} end
local interval = tonumber(ARGV[1]); local batch = tonumber(ARGV[2]); local dayw = tonumber(ARGV[3])
local rcap = tonumber(ARGV[4]); local mcap = tonumber(ARGV[5]); local member = ARGV[6]; local rcpt = tonumber(ARGV[7])
-- The same message (id and attempt) may ask again after a grant it did not use: the intake gave up
-- waiting for the answer, or the message came back. Its slot is still in the window (moved to now
-- below) and it is not counted against the day twice.
if batch > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - interval)
  if not redis.call('ZSCORE', KEYS[1], member) and redis.call('ZCARD', KEYS[1]) >= batch then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {tonumber(oldest[2]) + interval - now, 'interval', now}
  end
end
if (rcap > 0 or mcap > 0) and not redis.call('ZSCORE', KEYS[2], member .. '|' .. rcpt) then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - dayw)
  for _, m in ipairs(expired) do
    redis.call('HINCRBY', KEYS[3], 'rcpt', -tonumber(string.match(m, '|(%d+)$')))
    redis.call('HINCRBY', KEYS[3], 'msgs', -1)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - dayw)
  local tr = tonumber(redis.call('HGET', KEYS[3], 'rcpt') or '0')
  local tm = tonumber(redis.call('HGET', KEYS[3], 'msgs') or '0')
  -- A message larger than the whole cap goes alone once the window is empty rather than never.
  local over_r = rcap > 0 and tr + rcpt > rcap and tr > 0
  local over_m = mcap > 0 and tm + 1 > mcap
  if over_r or over_m then
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local fr = 0; local fm = 0
    for i = 1, #entries, 2 do
      fr = fr + tonumber(string.match(entries[i], '|(%d+)$')); fm = fm + 1
      local ok_r = rcap == 0 or tr - fr + rcpt <= rcap or tr - fr == 0
      local ok_m = mcap == 0 or tm - fm + 1 <= mcap
      if ok_r and ok_m then return {tonumber(entries[i + 1]) + dayw - now, 'daily', now} end
    end
    return {dayw, 'daily', now}
  end
  redis.call('ZADD', KEYS[2], now, member .. '|' .. rcpt)
  redis.call('HINCRBY', KEYS[3], 'rcpt', rcpt)
  redis.call('HINCRBY', KEYS[3], 'msgs', 1)
  redis.call('PEXPIRE', KEYS[2], dayw * 2)
  redis.call('PEXPIRE', KEYS[3], dayw * 2)
end
if batch > 0 then
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], interval * 2)
end
return {0, 'granted', now}
`;
