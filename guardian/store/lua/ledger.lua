-- Guardian ledger: one atomic batch of commits, releases, renewals and state reads, and at most one reservation.
--
-- Every key is passed in KEYS; ARGV refers to them by 1-based index, so a batch that
-- stays within one tenant's hash tag runs on one Redis Cluster slot.
--
-- A bucket is one hash. Field 'v' packs its counters (int64s): s1..sM (spent), r1..rM (reserved), x (the
-- earliest expiry, ms, of a hold or a settled-hold record; 0 when none). Field 'h:<call id>' packs a hold:
-- expiry, a1..aM. Field 'e:<call id>' packs what an expired hold was charged: until, a1..aM.
-- Field 'refused' counts the requests this bucket refused. Field 'l' packs the limits l1..lM the last reservation
-- judged it by (-1: none), so that `guardian status` shows them without the policy.
--
-- A hold that expires is CHARGED, not released: a process that died after its provider call (SIGKILL, a
-- crash loop) never reports usage, and releasing its hold would let the fleet serve more calls than the
-- budget. The charge is remembered in 'e:<id>' for a while, so that a commit or release arriving late (a
-- process that was only cut off) settles the difference instead of counting the call twice.
--
-- Packing keeps a reservation to a handful of redis.call()s per bucket, which is what a script costs.
-- Expired holds are swept only when 'x' says one may have expired (a crashed process's leftovers).
-- Every bucket is read before anything is written, so a key of the wrong type fails the whole batch with
-- nothing applied (Redis does not roll a script back), and the caller can resend the items one by one.
--
-- Every op is idempotent, so a batch re-sent after a lost reply (the client's own retry, or ours) never
-- charges twice: commits and charges through a call marker, a reservation replaces its own hold, an extension
-- raises a hold to a total (never adds to it), releases and renewals find nothing the second time.
--
-- ARGV: now_ms, settled_ttl_ms, nb {bucket_idx}*nb (every bucket the ops touch), op count, then ops:
--   C call_id marker_idx marker_ttl_ms nb {bucket_idx ttl_ms}*nb a1..aM H                commit (H: history)
--   A marker_idx marker_ttl_ms H                                                        append to a history, once
--      where H is history_idx (0: none), then, if not 0: payload at_ms keep_ms max_records
--   X call_id nb {bucket_idx}*nb                                                        release
--   W call_id hold_ttl_ms nb {bucket_idx}*nb                                            renew a live hold
--   S nb {bucket_idx}*nb                                                                read states
--   R call_id hold_ttl_ms mode marker_idx nk {kill_idx}*nk nb {bucket_idx ttl_ms enforce l1..lM}*nb a1..aM
--      mode 0 reserve (replace hold), 1 extend (raise the hold to a1..aM), 2 charge spent directly, once per
--      marker (marker_idx 0: none); plus 8 for a probe, whose refusal is not counted (a smaller try follows)
-- Returns for the R op: {0, states...} | {1, kill_pos} | {2, bucket_pos, metric_pos, limit, current, requested, states...}
-- where states = for each bucket s1..sM r1..rM. Without an R op: {0, {exists refused s1..sM r1..rM} per S bucket}.

local M = __METRIC_COUNT__  -- len(guardian.amounts.METRICS), filled in by RedisStore as it loads the script
local p = 1

local function nextarg()
  local v = ARGV[p]
  p = p + 1
  return v
end

local now = tonumber(nextarg())
local settled_ttl = tonumber(nextarg())

-- Packed counters of every bucket, read up front (false for a bucket that does not exist yet).
local stored = {}
for _ = 1, tonumber(nextarg()) do
  local hk = KEYS[tonumber(nextarg())]
  local packed = redis.pcall('HGET', hk, 'v')
  if type(packed) == 'table' and packed.err then
    return redis.error_reply(packed.err .. ' (guardian bucket ' .. hk .. ')')
  end
  stored[hk] = packed
end

local nops = tonumber(nextarg())

-- Counters are packed as little-endian int64s with the struct library: parsing and formatting
-- decimal strings cost ten times more than every redis.call() of a reservation together.
local FORMATS = {
  [2 * M + 1] = string.rep('<i8', 2 * M + 1),
  [M + 1] = string.rep('<i8', M + 1),
  [M] = string.rep('<i8', M),
}

local function numbers(packed, count)
  if packed then
    local t = {struct.unpack(FORMATS[count], packed)}
    t[count + 1] = nil -- struct.unpack also returns the next read position
    return t
  end
  local t = {}
  for i = 1, count do
    t[i] = 0
  end
  return t
end

local function pack(t, count)
  return struct.pack(FORMATS[count], unpack(t, 1, count))
end

-- Counters loaded in this call, written back once at the end: a commit and the next reservation
-- usually touch the same user and tenant buckets.
local loaded = {}
local dirty = {}
local order = {}
local limits_of = {} -- the limits a reservation judged a bucket by, kept with it ('l') for `guardian status`

-- Marks a loaded bucket for writing; ttl (ms) may be nil to keep the key's own.
local function save(hk, ttl)
  local previous = dirty[hk]
  if previous == nil then
    order[#order + 1] = hk
    dirty[hk] = ttl or false
  elseif ttl and (previous == false or ttl > previous) then
    dirty[hk] = ttl
  end
end

local function earlier(a, b)
  if a == 0 or (b ~= 0 and b < a) then
    return b
  end
  return a
end

-- Loads a bucket's counters, charging expired holds and forgetting expired charge records when one may exist.
local function load(hk)
  if loaded[hk] then
    return loaded[hk]
  end
  local packed = stored[hk]
  if packed == nil then -- not listed up front; read it now rather than take it for empty
    packed = redis.call('HGET', hk, 'v')
  end
  local v = numbers(packed, 2 * M + 1)
  loaded[hk] = v
  local x = v[2 * M + 1]
  if x ~= 0 and x <= now then
    local all = redis.call('HGETALL', hk)
    local earliest = 0
    for i = 1, #all, 2 do
      local field = all[i]
      local kind = string.sub(field, 1, 2)
      if kind == 'h:' or kind == 'e:' then
        local record = numbers(all[i + 1], M + 1)
        if record[1] > now then
          earliest = earlier(earliest, record[1])
        elseif kind == 'h:' then
          local settled = {now + settled_ttl}
          for m = 1, M do
            v[M + m] = v[M + m] - record[m + 1]
            v[m] = v[m] + record[m + 1]
            settled[m + 1] = record[m + 1]
          end
          redis.call('HDEL', hk, field)
          redis.call('HSET', hk, 'e:' .. string.sub(field, 3), pack(settled, M + 1))
          earliest = earlier(earliest, settled[1])
        else
          redis.call('HDEL', hk, field)
        end
      end
    end
    v[2 * M + 1] = earliest
    -- The swept holds are gone from the hash: their counters must be written back whatever this request's
    -- outcome (a refusal too), or they would stay reserved for good.
    save(hk, nil)
  end
  return v
end

local function write_back()
  for _, hk in ipairs(order) do
    if limits_of[hk] then
      redis.call('HSET', hk, 'v', pack(loaded[hk], 2 * M + 1), 'l', pack(limits_of[hk], M))
    else
      redis.call('HSET', hk, 'v', pack(loaded[hk], 2 * M + 1))
    end
    if dirty[hk] then
      redis.call('PEXPIRE', hk, dirty[hk])
    end
  end
end

-- Removes a call's record of the given kind ('h' a hold, 'e' a charged expired hold) from the counters;
-- returns its amounts (or nil). ``packed`` is the record when the caller already read it (false: read it here).
local function drop(hk, v, kind, id, packed)
  local field = kind .. ':' .. id
  if packed == false then
    packed = redis.call('HGET', hk, field)
  end
  if not packed then
    return nil
  end
  local record = numbers(packed, M + 1)
  local amounts = {}
  for m = 1, M do
    amounts[m] = record[m + 1]
    if kind == 'h' then
      v[M + m] = v[M + m] - amounts[m]
    else
      v[m] = v[m] - amounts[m] -- the charge is taken back; the caller adds what the call really used
    end
  end
  redis.call('HDEL', hk, field)
  return amounts
end

-- Settles a call on one bucket: drops its hold, or takes back the charge of its expired hold.
local function settle(hk, v, id)
  return drop(hk, v, 'h', id, false) or drop(hk, v, 'e', id, false)
end

local function read_amounts()
  local a = {}
  for i = 1, M do
    a[i] = tonumber(nextarg())
  end
  return a
end

local function append_state(out, v)
  for i = 1, 2 * M do
    out[#out + 1] = v[i]
  end
end

-- A record of the spend history: a Stream entry whose id is the caller's clock (kept in order: never before the
-- last entry's), trimmed to keep_ms of age (exactly) and about max_records (whole nodes, cheaply); the stream
-- itself goes after keep_ms idle.
local function history()
  local hidx = tonumber(nextarg())
  if hidx == 0 then
    return nil
  end
  return {KEYS[hidx], nextarg(), tonumber(nextarg()), tonumber(nextarg()), tonumber(nextarg())}
end

local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

-- History is best effort: every call here is a pcall, so a stream that cannot be written (a key of another type,
-- a Redis before 7.0 that has no '<ms>-*' ids) never costs the commit it rides with.
local function append(h)
  local hk, payload, at, keep_ms, max_records = h[1], h[2], h[3], h[4], h[5]
  local minid = string.format('%d', at - keep_ms)
  -- The caller's time as the id; a clock behind the last entry's (another host's) gets the last entry's time.
  local added = redis.pcall('XADD', hk, 'MINID', minid, string.format('%d', at) .. '-*', 'r', payload)
  if failed(added) then
    local last = redis.pcall('XREVRANGE', hk, '+', '-', 'COUNT', 1)
    local ms = nil
    if not failed(last) and last[1] then
      ms = tonumber(string.match(last[1][1], '^(%d+)'))
    end
    if ms then
      added = redis.pcall('XADD', hk, 'MINID', minid, string.format('%d', ms) .. '-*', 'r', payload)
    end
    if ms == nil or failed(added) then
      added = redis.pcall('XADD', hk, '*', 'r', payload)
    end
    if failed(added) then
      return
    end
  end
  local length = redis.pcall('XLEN', hk)
  if not failed(length) and length > max_records then
    redis.pcall('XTRIM', hk, 'MAXLEN', '~', max_records)
  end
  redis.pcall('PEXPIRE', hk, keep_ms)
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
      buckets[b] = {KEYS[tonumber(nextarg())], nextarg()}
    end
    local a = read_amounts()
    local h = history()
    local first = redis.call('SET', marker, '1', 'NX', 'PX', marker_ttl)
    if first and h then
      append(h)
    end
    for _, bk in ipairs(buckets) do
      local v = load(bk[1])
      if first then
        settle(bk[1], v, id)
        for m = 1, M do
          v[m] = v[m] + a[m]
        end
      else
        drop(bk[1], v, 'h', id, false) -- a duplicate: only a hold made again since is left to drop
      end
      save(bk[1], bk[2])
    end
  elseif op == 'A' then
    local marker_idx = tonumber(nextarg())
    local marker_ttl = nextarg()
    local h = history()
    -- A record sent twice (a batch re-sent after a lost reply) is appended once.
    if marker_idx == 0 or redis.call('SET', KEYS[marker_idx], '1', 'NX', 'PX', marker_ttl) then
      append(h)
    end
  elseif op == 'X' then
    local id = nextarg()
    local nb = tonumber(nextarg())
    for _ = 1, nb do
      local hk = KEYS[tonumber(nextarg())]
      if redis.call('HEXISTS', hk, 'h:' .. id) == 1 or redis.call('HEXISTS', hk, 'e:' .. id) == 1 then
        local v = load(hk)
        settle(hk, v, id)
        save(hk, nil)
      end
    end
  elseif op == 'W' then
    local id = nextarg()
    local expiry = now + tonumber(nextarg())
    local nb = tonumber(nextarg())
    for _ = 1, nb do
      local hk = KEYS[tonumber(nextarg())]
      local field = 'h:' .. id
      if redis.call('HEXISTS', hk, field) == 1 then
        load(hk) -- a hold that has already expired is charged here, not revived
        local packed = redis.call('HGET', hk, field)
        if packed then
          local hold = numbers(packed, M + 1)
          if expiry > hold[1] then
            hold[1] = expiry -- 'x' may now be earlier than any expiry: that only costs an early sweep
            redis.call('HSET', hk, field, pack(hold, M + 1))
          end
        end
      end
    end
  elseif op == 'S' then
    local nb = tonumber(nextarg())
    for _ = 1, nb do
      local hk = KEYS[tonumber(nextarg())]
      local v = load(hk)
      result[#result + 1] = (dirty[hk] ~= nil or redis.call('EXISTS', hk) == 1) and 1 or 0
      result[#result + 1] = tonumber(redis.call('HGET', hk, 'refused') or 0)
      append_state(result, v)
    end
  elseif op == 'R' then
    local id = nextarg()
    local hold_ttl = tonumber(nextarg())
    local mode = tonumber(nextarg())
    local probe = mode >= 8
    if probe then
      mode = mode - 8
    end
    local marker_idx = tonumber(nextarg())
    local nk = tonumber(nextarg())
    local kill_keys = {}
    for k = 1, nk do
      kill_keys[k] = KEYS[tonumber(nextarg())]
    end
    local killed = nil
    -- One EXISTS for all flags; which one is set is only looked up when one is.
    if nk > 0 and redis.call('EXISTS', unpack(kill_keys)) > 0 then
      for k = 1, nk do
        if redis.call('EXISTS', kill_keys[k]) == 1 then
          killed = k - 1
          break
        end
      end
    end
    local nb = tonumber(nextarg())
    local buckets = {}
    for b = 1, nb do
      local bk = {KEYS[tonumber(nextarg())], nextarg(), tonumber(nextarg()), {}}
      for m = 1, M do
        bk[4][m] = tonumber(nextarg())
      end
      buckets[b] = bk
      limits_of[bk[1]] = bk[4]
    end
    local a = read_amounts()
    if killed ~= nil then
      write_back()
      return {1, killed}
    end
    local marker = marker_idx > 0 and KEYS[marker_idx] or nil
    -- A charge already applied (its reply was lost and the call sent again) is granted without a second charge.
    local applied = marker ~= nil and redis.call('EXISTS', marker) == 1
    local states = {}
    local holds = {} -- each bucket's current hold of this call, read once (false: none)
    local charged = {} -- for an extension without a hold: the charge of its expired hold (false: none)
    local refusal = nil
    for b, bk in ipairs(buckets) do
      local v = load(bk[1])
      states[b] = v
      holds[b] = mode ~= 2 and redis.call('HGET', bk[1], 'h:' .. id) or false
      -- An extension whose hold expired (and was charged) is judged against that charge, or a stream whose
      -- renewals failed would go on unchecked; one whose call was committed has nothing left to judge.
      charged[b] = mode == 1 and not holds[b] and redis.call('HGET', bk[1], 'e:' .. id) or false
      if refusal == nil and bk[3] == 1 and not applied and not (mode == 1 and not holds[b] and not charged[b]) then
        local record = holds[b] or charged[b]
        local held = record and numbers(record, M + 1) or nil
        for m = 1, M do
          local limit = bk[4][m]
          local want = a[m]
          if held then
            -- The request replaces (reserve) or is raised to (extend) the hold this call already has.
            want = mode == 0 and a[m] - held[m + 1] or math.max(0, a[m] - held[m + 1])
          end
          if limit >= 0 and want > 0 then
            local current = v[m] + v[M + m]
            if current + want > limit then
              refusal = {2, b - 1, m - 1, limit, current, want}
              break
            end
          end
        end
      end
    end
    if refusal ~= nil then
      -- Counted on the bucket that refused, so `guardian status` shows how many calls a budget turned away.
      if not probe then
        local refusing = buckets[refusal[2] + 1]
        redis.call('HINCRBY', refusing[1], 'refused', 1)
        redis.call('PEXPIRE', refusing[1], refusing[2])
      end
      for _, v in ipairs(states) do
        append_state(refusal, v)
      end
      write_back()
      return refusal
    end
    if marker ~= nil and not applied then
      redis.call('SET', marker, '1', 'PX', settled_ttl)
    end
    result = {0}
    local expiry = now + hold_ttl
    for b, bk in ipairs(buckets) do
      local hk, v = bk[1], states[b]
      -- Nothing to do for a charge sent again, or for an extension of a hold already settled (a commit or an
      -- expiry came first): raising it would hold what nobody will release.
      local skip = applied or (mode == 1 and not holds[b])
      if not applied and charged[b] then
        -- The expired hold's charge rises to what the stream now needs (never falls).
        local record = numbers(charged[b], M + 1)
        for m = 1, M do
          if a[m] > record[m + 1] then
            v[m] = v[m] + a[m] - record[m + 1]
            record[m + 1] = a[m]
          end
        end
        redis.call('HSET', hk, 'e:' .. id, pack(record, M + 1))
        save(hk, bk[2])
      elseif not skip and mode == 2 then
        for m = 1, M do
          v[m] = v[m] + a[m]
        end
        save(hk, bk[2])
      elseif not skip then
        local previous = drop(hk, v, 'h', id, holds[b])
        local hold = {expiry}
        for m = 1, M do
          hold[m + 1] = a[m]
          if mode == 1 and previous and previous[m] > a[m] then
            hold[m + 1] = previous[m]
          end
          v[M + m] = v[M + m] + hold[m + 1]
        end
        redis.call('HSET', hk, 'h:' .. id, pack(hold, M + 1))
        v[2 * M + 1] = earlier(v[2 * M + 1], expiry)
        save(hk, bk[2])
      end
      append_state(result, v)
    end
  else
    return redis.error_reply('guardian ledger: unknown op ' .. tostring(op))
  end
end

write_back()
return result
