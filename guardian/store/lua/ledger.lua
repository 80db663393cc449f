-- Guardian ledger: one atomic batch of commits/releases and at most one reservation.
--
-- Every key is passed in KEYS; ARGV refers to them by 1-based index, so a batch that
-- stays within one tenant's hash tag runs on one Redis Cluster slot.
--
-- Bucket hash fields: s1..s6 spent, r1..r6 reserved, 'h:<call id>' = packed hold.
-- Bucket zset (<bucket>:rx): call id -> hold expiry (ms), so expired holds are found in O(log n).
--
-- ARGV: now_ms, op count, then ops:
--   C call_id marker_idx marker_ttl_ms nb {hk zk ttl_ms}*nb a1..a6        commit
--   X call_id nb {hk zk}*nb                                                  release
--   R call_id ttl_ms mode nk {kill_idx}*nk nb {hk zk ttl_ms enforce l1..l6}*nb a1..a6
--      mode 0 reserve (replace hold), 1 extend hold, 2 charge spent directly
-- Returns for the R op: {0, states...} | {1, kill_pos} | {2, bucket_pos, metric_pos, limit, current, requested, states...}
-- where states = for each bucket s1..s6 r1..r6. Without an R op: {0}.

local M = 6
local SF = {'s1', 's2', 's3', 's4', 's5', 's6'}
local RF = {'r1', 'r2', 'r3', 'r4', 'r5', 'r6'}
local ALL = {'s1', 's2', 's3', 's4', 's5', 's6', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6'}

local now = tonumber(ARGV[1])
local nops = tonumber(ARGV[2])
local p = 3

local function nextarg()
  local v = ARGV[p]
  p = p + 1
  return v
end

local function fmt(n)
  return string.format('%d', n)
end

local function unpack_hold(packed)
  local t = {}
  for v in string.gmatch(packed, '[^,]+') do
    t[#t + 1] = tonumber(v)
  end
  return t
end

local function drop(hk, zk, id)
  local field = 'h:' .. id
  local packed = redis.call('HGET', hk, field)
  local hold = nil
  if packed then
    hold = unpack_hold(packed)
    for i = 1, M do
      if hold[i] ~= 0 then
        redis.call('HINCRBY', hk, RF[i], fmt(-hold[i]))
      end
    end
    redis.call('HDEL', hk, field)
  end
  redis.call('ZREM', zk, id)
  return hold
end

local function purge(hk, zk)
  local expired = redis.call('ZRANGEBYSCORE', zk, '-inf', now)
  for _, id in ipairs(expired) do
    drop(hk, zk, id)
  end
end

local function state(hk)
  local raw = redis.call('HMGET', hk, unpack(ALL))
  local out = {}
  for i = 1, 2 * M do
    out[i] = tonumber(raw[i]) or 0
  end
  return out
end

local function read_amounts()
  local a = {}
  for i = 1, M do
    a[i] = tonumber(nextarg())
  end
  return a
end

local result = {0}

for _ = 1, nops do
  local op = nextarg()
  if op == 'C' then
    local id = nextarg()
    local marker = KEYS[tonumber(nextarg())]
    local marker_ttl = nextarg()
    local nb = tonumber(nextarg())
    local buckets = {}
    for b = 1, nb do
      buckets[b] = {KEYS[tonumber(nextarg())], KEYS[tonumber(nextarg())], nextarg()}
    end
    local a = read_amounts()
    local first = redis.call('SET', marker, '1', 'NX', 'PX', marker_ttl)
    for _, bk in ipairs(buckets) do
      drop(bk[1], bk[2], id)
      if first then
        for i = 1, M do
          if a[i] ~= 0 then
            redis.call('HINCRBY', bk[1], SF[i], fmt(a[i]))
          end
        end
      end
      redis.call('PEXPIRE', bk[1], bk[3])
    end
  elseif op == 'X' then
    local id = nextarg()
    local nb = tonumber(nextarg())
    for _ = 1, nb do
      local hk = KEYS[tonumber(nextarg())]
      local zk = KEYS[tonumber(nextarg())]
      drop(hk, zk, id)
    end
  elseif op == 'R' then
    local id = nextarg()
    local ttl = tonumber(nextarg())
    local mode = tonumber(nextarg())
    local nk = tonumber(nextarg())
    local killed = nil
    for k = 1, nk do
      local kk = KEYS[tonumber(nextarg())]
      if killed == nil and redis.call('EXISTS', kk) == 1 then
        killed = k - 1
      end
    end
    local nb = tonumber(nextarg())
    local buckets = {}
    for b = 1, nb do
      local bk = {KEYS[tonumber(nextarg())], KEYS[tonumber(nextarg())], nextarg(), tonumber(nextarg()), {}}
      for i = 1, M do
        bk[5][i] = tonumber(nextarg())
      end
      buckets[b] = bk
    end
    local a = read_amounts()
    if killed ~= nil then
      return {1, killed}
    end
    local states = {}
    local refusal = nil
    for b, bk in ipairs(buckets) do
      purge(bk[1], bk[2])
      local st = state(bk[1])
      states[b] = st
      if refusal == nil and bk[4] == 1 then
        local held = nil
        if mode == 0 then
          local packed = redis.call('HGET', bk[1], 'h:' .. id)
          if packed then
            held = unpack_hold(packed)
          end
        end
        for i = 1, M do
          local limit = bk[5][i]
          if limit >= 0 and a[i] > 0 then
            local current = st[i] + st[M + i] - (held and held[i] or 0)
            if current + a[i] > limit then
              refusal = {2, b - 1, i - 1, limit, current, a[i]}
              break
            end
          end
        end
      end
    end
    if refusal ~= nil then
      for _, st in ipairs(states) do
        for i = 1, 2 * M do
          refusal[#refusal + 1] = st[i]
        end
      end
      return refusal
    end
    result = {0}
    for _, bk in ipairs(buckets) do
      local hk, zk = bk[1], bk[2]
      if mode == 2 then
        for i = 1, M do
          if a[i] ~= 0 then
            redis.call('HINCRBY', hk, SF[i], fmt(a[i]))
          end
        end
      else
        local prev = drop(hk, zk, id)
        local hold = {}
        for i = 1, M do
          hold[i] = a[i]
          if mode == 1 and prev then
            hold[i] = hold[i] + prev[i]
          end
          if hold[i] ~= 0 then
            redis.call('HINCRBY', hk, RF[i], fmt(hold[i]))
          end
        end
        local packed = {}
        for i = 1, M do
          packed[i] = fmt(hold[i])
        end
        redis.call('HSET', hk, 'h:' .. id, table.concat(packed, ','))
        redis.call('ZADD', zk, now + ttl, id)
        redis.call('PEXPIRE', zk, bk[3])
      end
      redis.call('PEXPIRE', hk, bk[3])
      local st = state(hk)
      for i = 1, 2 * M do
        result[#result + 1] = st[i]
      end
    end
  else
    return redis.error_reply('guardian ledger: unknown op ' .. tostring(op))
  end
end

return result
