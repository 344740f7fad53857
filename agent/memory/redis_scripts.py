"""Lua scripts run by Redis: append-plus-evict, delete and the chunk range query, each atomic.

Keys (P = key prefix, S = stream id, C = chunk id "%010x"; ref = C .. "%05x" % row,
member = ref .. pack("<df", time, retention)):
    P:config          hash    schema, structure (JSON of the structural retention knobs)
    P:g               hash    tokens, bytes, appended, evicted, corrupt (totals over streams)
    P:streams         set     stream ids
    P:gc              zset    S|member -> retention: tier-1 candidates of every stream
    P:tmp:<uid>       string  an append's chunk bytes, renamed by the script within the same MULTI
    P:s:S:m           hash    layout, width, head, seq (next chunk), tokens, appended, evicted
    P:s:S:d:C         string  chunk bytes (codec.py): header + one record per stored row
    P:s:S:x:C         string  bitmap of the chunk's evicted rows (bit = original row)
    P:s:S:k / n       hash    C -> live rows / stored rows
    P:s:S:c0 / c1     zset    C -> first / last time of the stored rows
    P:s:S:u / cu      hash    append uid -> C / C -> uid (idempotent retries)
    P:s:S:r           zset    member -> time: tier 3, the recent window
    P:s:S:f:<bucket>  zset    member -> retention: tier 2, the floor of one time bucket
    P:s:S:fb          zset    bucket -> bucket: buckets whose floor holds tokens
    P:s:S:c           zset    member -> retention: tier 1, evictable by score
    P:s:S:b           hash    bucket -> retained tokens
    P:s:S:lease       string  "<fencing token> <agent id>" (PX): the agent allowed to append (agent.cluster)
    P:s:S:epoch       string  the stream's last fencing token (INCR on every claim)
An evicted token only sets its bit; a chunk is rewritten without its dead rows once they reach the compaction
fraction of its stored rows, and deleted with its last live row.

Every script gets the same KEYS (`KeyLayout.script_keys`): the stream's key base, the three global keys, the
append's parked chunk, the compaction scratch key and the stream's lease. On Redis Cluster the stream base is
hash-tagged (`P:s:{S}`) and the "global" keys are the stream's own (`P:s:{S}:g` ...), so that each script
touches one hash slot; the set of stream ids (`P:streams`) is then kept by the client, and the total budgets
bound each stream rather than the sum (docs/cluster.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names of one memory: plain on a standalone Redis, hash-tagged per stream on Redis Cluster."""

    prefix: str
    cluster: bool = False

    def stream(self, stream_id: str) -> str:
        """The base every key of the stream starts with (`P:s:S`, or `P:s:{S}` on Cluster)."""
        return f"{self.prefix}:s:{{{stream_id}}}" if self.cluster else f"{self.prefix}:s:{stream_id}"

    def skey(self, stream_id: str, suffix: str) -> str:
        """One key of the stream, e.g. `skey(s, "m")`."""
        return f"{self.stream(stream_id)}:{suffix}"

    def key(self, *parts: str) -> str:
        """A key directly under the prefix (config, the stream set)."""
        return ":".join((self.prefix, *parts))

    def lease(self, stream_id: str) -> str:
        """The stream's ownership lease, in the stream's hash slot so the append script can check it."""
        return self.skey(stream_id, "lease")

    def epoch(self, stream_id: str) -> str:
        """The stream's fencing-token counter."""
        return self.skey(stream_id, "epoch")

    def tmp(self, stream_id: str, uid: str) -> str:
        """Where an append parks its chunk bytes before the script files them."""
        return self.skey(stream_id, f"tmp:{uid}") if self.cluster else self.key("tmp", uid)

    def script_keys(self, stream_id: str, uid: str = "") -> list[str]:
        """KEYS of every memory script: base, G, STREAMS, GC, parked chunk, compaction scratch, lease."""
        if self.cluster:
            head = [self.skey(stream_id, "g"), self.skey(stream_id, "streams"), self.skey(stream_id, "gc")]
            scratch = self.skey(stream_id, "tmpc")
        else:
            head = [self.key("g"), self.key("streams"), self.key("gc")]
            scratch = self.key("tmp", "compact")
        parked = self.tmp(stream_id, uid or "none")
        return [self.stream(stream_id), *head, parked, scratch, self.lease(stream_id)]


_COMMON = r"""
local P, SELF = ARGV[1], ARGV[2]
local HDR = 16
local BASE, G, STREAMS, GC = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local STREAM_TYPES = {m = 'hash', k = 'hash', n = 'hash', u = 'hash', cu = 'hash', c0 = 'zset', c1 = 'zset',
                      r = 'zset', c = 'zset', fb = 'zset', b = 'hash'}

local function num(x) return string.format('%.17g', x) end
local function key(s, suffix)
  if s == SELF then return BASE .. ':' .. suffix end
  return P .. ':s:' .. s .. ':' .. suffix
end

local function type_ok(k, want)
  local t = redis.call('TYPE', k).ok
  return t == 'none' or t == want
end

local function stream_ok(s)
  for suffix, want in pairs(STREAM_TYPES) do
    if not type_ok(key(s, suffix), want) then return false end
  end
  return true
end

local function globals_ok()
  return type_ok(G, 'hash') and type_ok(STREAMS, 'set') and type_ok(GC, 'zset')
end

-- bytewise a < b (Lua's own string comparison follows the server's locale)
local function bytes_lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function batched(cmd, k, args, step)
  for i = 1, #args, step do
    redis.call(cmd, k, unpack(args, i, math.min(i + step - 1, #args)))
  end
end
"""

APPEND = (
    _COMMON
    + r"""
-- ARGV: 1 prefix, 2 stream, 3 uid, 4 layout, 5 index: per token pack('<df', time, retention) ('' = only
--       enforce budgets), 6 record width, 7 max tokens/stream, 8 max bytes/stream, 9 max tokens total,
--       10 max bytes total, 11 bucket seconds, 12 floor tokens per bucket, 13 recent seconds,
--       14 compaction fraction, 15 fencing token ('' = unfenced). The chunk bytes wait in KEYS[5], SET in
--       the same MULTI. A fenced append is refused (FSAMEM_FENCED) unless the stream's lease holds its token.
local S, UID, LAYOUT, IDX = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local W = tonumber(ARGV[6])
local MAXT_S, MAXB_S = tonumber(ARGV[7]), tonumber(ARGV[8])
local MAXT_G, MAXB_G = tonumber(ARGV[9]), tonumber(ARGV[10])
local BS, FLOOR, RECENT = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local COMPACT = tonumber(ARGV[14])
local M = key(S, 'm')
local FENCE = ARGV[15] or ''
local TMP = KEYS[5]

local function reject(message)
  if UID ~= '' then redis.call('DEL', TMP) end
  return redis.error_reply(message)
end

-- phase 1: validate everything before the first write, so that a rejected append writes nothing
if not (globals_ok() and stream_ok(S)) then
  return reject('FSAMEM_CORRUPT a key of stream ' .. S .. ' or a global key holds a foreign type')
end
if FENCE ~= '' then
  local holder = redis.call('GET', KEYS[7])
  local token = holder and string.match(holder, '^(%d+) ')
  if token ~= FENCE then
    return reject('FSAMEM_FENCED stream ' .. S .. ' is leased to ' .. (holder or 'nobody') ..
                  ', not to token ' .. FENCE)
  end
end
local stored_layout = redis.call('HGET', M, 'layout')
local n = 0
if IDX ~= '' then
  if stored_layout and stored_layout ~= LAYOUT then return reject('FSAMEM_LAYOUT ' .. stored_layout) end
  n = #IDX / 12
  if redis.call('TYPE', TMP).ok ~= 'string' or redis.call('STRLEN', TMP) ~= HDR + n * W
     or redis.call('GETRANGE', TMP, 0, 3) ~= 'FSMc' then
    return reject('FSAMEM_INPUT the chunk bytes do not match the index')
  end
  local dup = redis.call('HGET', key(S, 'u'), UID)
  if dup then
    redis.call('DEL', TMP)
    return {'dup', dup, tonumber(redis.call('HGET', key(S, 'k'), dup)) or 0, 0,
            tonumber(redis.call('HGET', M, 'tokens')) or 0, tonumber(redis.call('HGET', G, 'tokens')) or 0, 0}
  end
else
  W = tonumber(redis.call('HGET', M, 'width')) or 0
end

local widths = {[S] = W}
local function width_of(s)
  if widths[s] == nil then widths[s] = tonumber(redis.call('HGET', key(s, 'm'), 'width')) or 0 end
  return widths[s]
end
local dirty, bdelta, gone = {}, {}, {}
local corrupt = 0

local function bucket_str(t) return string.format('%d', math.floor(t / BS)) end

local function cand_add(s, member, r)
  redis.call('ZADD', key(s, 'c'), num(r), member)
  redis.call('ZADD', GC, num(r), s .. '|' .. member)
end

-- a non-recent token joins its bucket's floor if it is among the bucket's best, else the candidates
local function place(s, member, t, r)
  if FLOOR == 0 then cand_add(s, member, r) return end
  local bstr = bucket_str(t)
  local fk = key(s, 'f:' .. bstr)
  local count = redis.call('ZCARD', fk)
  if count < FLOOR then
    redis.call('ZADD', fk, num(r), member)
    if count == 0 then redis.call('ZADD', key(s, 'fb'), bstr, bstr) end
    return
  end
  local low = redis.call('ZRANGE', fk, 0, 0, 'WITHSCORES')
  local lm, lr = low[1], tonumber(low[2])
  if r > lr or (r == lr and bytes_lt(string.sub(lm, 1, 15), string.sub(member, 1, 15))) then
    redis.call('ZREM', fk, lm)
    redis.call('ZADD', fk, num(r), member)
    cand_add(s, lm, lr)
  else
    cand_add(s, member, r)
  end
end

local function evict(s, member)
  local t = struct.unpack('<d', member, 16)
  local chunk, row = string.sub(member, 1, 10), tonumber(string.sub(member, 11, 15), 16)
  dirty[s] = dirty[s] or {}
  dirty[s][chunk] = dirty[s][chunk] or {}
  dirty[s][chunk][row] = true
  local bstr = bucket_str(t)
  bdelta[s] = bdelta[s] or {}
  bdelta[s][bstr] = (bdelta[s][bstr] or 0) - 1
  gone[s] = (gone[s] or 0) + 1
end

local function pop_score(s, count)
  local popped = redis.call('ZPOPMIN', key(s, 'c'), count)
  local global = {}
  for i = 1, #popped, 2 do
    evict(s, popped[i])
    global[#global + 1] = s .. '|' .. popped[i]
  end
  batched('ZREM', GC, global, 1000)
  return #popped / 2
end

local function pop_floor(s, count)
  local done = 0
  while done < count do
    local first = redis.call('ZRANGE', key(s, 'fb'), 0, 0)
    if #first == 0 then break end
    local fk = key(s, 'f:' .. first[1])
    local popped = redis.call('ZPOPMIN', fk, count - done)
    for i = 1, #popped, 2 do evict(s, popped[i]) end
    done = done + #popped / 2
    if redis.call('EXISTS', fk) == 0 then redis.call('ZREM', key(s, 'fb'), first[1]) end
  end
  return done
end

local function pop_recent(s, count)
  local popped = redis.call('ZPOPMIN', key(s, 'r'), count)
  for i = 1, #popped, 2 do evict(s, popped[i]) end
  return #popped / 2
end

-- phase 2: insert the chunk
local tokens_s = tonumber(redis.call('HGET', M, 'tokens')) or 0
local head = tonumber(redis.call('HGET', M, 'head'))
local chunk_id = ''
if n > 0 then
  chunk_id = string.format('%010x', redis.call('HINCRBY', M, 'seq', 1) - 1)
  redis.call('RENAME', TMP, key(S, 'd:' .. chunk_id))
  redis.call('PERSIST', key(S, 'd:' .. chunk_id))
  redis.call('HSET', key(S, 'k'), chunk_id, n)
  redis.call('HSET', key(S, 'n'), chunk_id, n)
  redis.call('HSET', key(S, 'u'), UID, chunk_id)
  redis.call('HSET', key(S, 'cu'), chunk_id, UID)
  local ts, rs = {}, {}
  local tmin, tmax = math.huge, -math.huge
  for i = 0, n - 1 do
    ts[i], rs[i] = struct.unpack('<df', IDX, 1 + i * 12)
    if ts[i] < tmin then tmin = ts[i] end
    if ts[i] > tmax then tmax = ts[i] end
  end
  head = head and math.max(head, tmax) or tmax
  local cutoff = head - RECENT
  local recent, counts = {}, {}
  for i = 0, n - 1 do
    local member = chunk_id .. string.format('%05x', i) .. string.sub(IDX, 1 + i * 12, 12 + i * 12)
    local bstr = bucket_str(ts[i])
    counts[bstr] = (counts[bstr] or 0) + 1
    if ts[i] > cutoff then
      recent[#recent + 1] = num(ts[i])
      recent[#recent + 1] = member
    else
      place(S, member, ts[i], rs[i])
    end
  end
  batched('ZADD', key(S, 'r'), recent, 2000)
  for bstr, c in pairs(counts) do redis.call('HINCRBY', key(S, 'b'), bstr, c) end
  redis.call('ZADD', key(S, 'c0'), num(tmin), chunk_id)
  redis.call('ZADD', key(S, 'c1'), num(tmax), chunk_id)
  redis.call('HSET', M, 'layout', LAYOUT, 'width', W, 'head', num(head))
  redis.call('HINCRBY', M, 'tokens', n)
  redis.call('HINCRBY', M, 'appended', n)
  redis.call('SADD', STREAMS, S)
  redis.call('HINCRBY', G, 'tokens', n)
  redis.call('HINCRBY', G, 'bytes', n * W)
  redis.call('HINCRBY', G, 'appended', n)
  tokens_s = tokens_s + n
end

-- phase 3: tokens that left the recent window join their buckets
if head then
  local cut = num(head - RECENT)
  local aged = redis.call('ZRANGEBYSCORE', key(S, 'r'), '-inf', cut)
  if #aged > 0 then
    redis.call('ZREMRANGEBYSCORE', key(S, 'r'), '-inf', cut)
    for _, member in ipairs(aged) do
      local t, r = struct.unpack('<df', member, 16)
      place(S, member, t, r)
    end
  end
end

-- phase 4: the stream's budgets
if tokens_s > 0 and W > 0 then
  local need = math.max(0, tokens_s - MAXT_S, math.ceil((tokens_s * W - MAXB_S) / W))
  if need > 0 then need = need - pop_score(S, need) end
  if need > 0 then need = need - pop_floor(S, need) end
  if need > 0 then need = need - pop_recent(S, need) end
end

-- phase 5: the global budgets, over the merged order of all streams
local gT = (tonumber(redis.call('HGET', G, 'tokens')) or 0) - (gone[S] or 0)
local gB = (tonumber(redis.call('HGET', G, 'bytes')) or 0) - (gone[S] or 0) * W

local function better(a, b)
  if b == nil then return true end
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return bytes_lt(a[3] .. '|' .. string.sub(a[4], 1, 15), b[3] .. '|' .. string.sub(b[4], 1, 15))
end

local function pick_global()
  local top = redis.call('ZPOPMIN', GC)
  if #top > 0 then
    local bar = string.find(top[1], '|', 1, true)
    local s, member = string.sub(top[1], 1, bar - 1), string.sub(top[1], bar + 1)
    redis.call('ZREM', key(s, 'c'), member)
    return s, member
  end
  local streams = redis.call('SMEMBERS', STREAMS)
  local best = nil
  for _, s in ipairs(streams) do
    if stream_ok(s) then
      local first = redis.call('ZRANGE', key(s, 'fb'), 0, 0)
      if #first > 0 then
        local low = redis.call('ZRANGE', key(s, 'f:' .. first[1]), 0, 0, 'WITHSCORES')
        local cand = {tonumber(first[1]), tonumber(low[2]), s, low[1], key(s, 'f:' .. first[1]), first[1]}
        if better(cand, best) then best = cand end
      end
    end
  end
  if best then
    redis.call('ZREM', best[5], best[4])
    if redis.call('EXISTS', best[5]) == 0 then redis.call('ZREM', key(best[3], 'fb'), best[6]) end
    return best[3], best[4]
  end
  for _, s in ipairs(streams) do
    if stream_ok(s) then
      local low = redis.call('ZRANGE', key(s, 'r'), 0, 0, 'WITHSCORES')
      if #low > 0 then
        local cand = {tonumber(low[2]), 0, s, low[1]}
        if better(cand, best) then best = cand end
      end
    end
  end
  if best then
    redis.call('ZREM', key(best[3], 'r'), best[4])
    return best[3], best[4]
  end
  return nil, nil
end

local over = 0
while gT > MAXT_G or gB > MAXB_G do
  local s, member = pick_global()
  if s == nil then over = 1 break end
  evict(s, member)
  gT = gT - 1
  gB = gB - width_of(s)
end

-- phase 6: mark evicted rows, compact or drop the chunks that lost them, settle the counters
local function drop_chunk(s, chunk)
  redis.call('DEL', key(s, 'd:' .. chunk), key(s, 'x:' .. chunk))
  redis.call('HDEL', key(s, 'k'), chunk)
  redis.call('HDEL', key(s, 'n'), chunk)
  redis.call('ZREM', key(s, 'c0'), chunk)
  redis.call('ZREM', key(s, 'c1'), chunk)
  local uid = redis.call('HGET', key(s, 'cu'), chunk)
  if uid then
    redis.call('HDEL', key(s, 'u'), uid)
    redis.call('HDEL', key(s, 'cu'), chunk)
  end
end

local function is_dead(bitmap, row)
  local byte = string.byte(bitmap, math.floor(row / 8) + 1) or 0
  return bit.band(byte, bit.rshift(128, row % 8)) ~= 0
end

-- rewrite a chunk without its dead rows, piece by piece through a scratch key (no big Lua strings kept)
local function compact(s, chunk, stored)
  local dk, w = key(s, 'd:' .. chunk), width_of(s)
  if redis.call('TYPE', dk).ok ~= 'string' or redis.call('STRLEN', dk) ~= HDR + stored * w
     or redis.call('GETRANGE', dk, 0, 3) ~= 'FSMc' then
    corrupt = corrupt + 1
    return false
  end
  local bitmap = redis.call('GET', key(s, 'x:' .. chunk)) or ''
  local tmp = KEYS[6]
  redis.call('SET', tmp, string.rep('\0', HDR))
  local start, kept, tmin, tmax = nil, 0, math.huge, -math.huge
  for i = 0, stored - 1 do
    local off = HDR + i * w
    local row, t = struct.unpack('<I4d', redis.call('GETRANGE', dk, off, off + 11))
    if is_dead(bitmap, row) then
      if start then redis.call('APPEND', tmp, redis.call('GETRANGE', dk, start, off - 1)) start = nil end
    else
      kept = kept + 1
      if t < tmin then tmin = t end
      if t > tmax then tmax = t end
      if not start then start = off end
    end
  end
  if start then redis.call('APPEND', tmp, redis.call('GETRANGE', dk, start, HDR + stored * w - 1)) end
  if kept == 0 then redis.call('DEL', tmp) return false end
  redis.call('SETRANGE', tmp, 0, 'FSMc' .. struct.pack('<I4I4I4', kept, w, 0))
  redis.call('RENAME', tmp, dk)
  redis.call('HSET', key(s, 'n'), chunk, kept)
  redis.call('ZADD', key(s, 'c0'), num(tmin), chunk)
  redis.call('ZADD', key(s, 'c1'), num(tmax), chunk)
  return true
end

local kept_new = n
for s, chunks in pairs(dirty) do
  for chunk, rows in pairs(chunks) do
    local xk, count = key(s, 'x:' .. chunk), 0
    for row, _ in pairs(rows) do
      redis.call('SETBIT', xk, row, 1)
      count = count + 1
    end
    local live = redis.call('HINCRBY', key(s, 'k'), chunk, -count)
    local stored = tonumber(redis.call('HGET', key(s, 'n'), chunk)) or 0
    if live <= 0 then
      drop_chunk(s, chunk)
    elseif stored - live >= COMPACT * stored and not compact(s, chunk, stored) then
      drop_chunk(s, chunk)
      live = 0
    end
    if s == S and chunk == chunk_id then kept_new = math.max(live, 0) end
  end
end
for s, deltas in pairs(bdelta) do
  for bstr, d in pairs(deltas) do
    if redis.call('HINCRBY', key(s, 'b'), bstr, d) <= 0 then redis.call('HDEL', key(s, 'b'), bstr) end
  end
end
local evicted, freed = 0, 0
for s, k in pairs(gone) do
  redis.call('HINCRBY', key(s, 'm'), 'tokens', -k)
  redis.call('HINCRBY', key(s, 'm'), 'evicted', k)
  evicted = evicted + k
  freed = freed + k * width_of(s)
end
if evicted > 0 then
  redis.call('HINCRBY', G, 'tokens', -evicted)
  redis.call('HINCRBY', G, 'bytes', -freed)
  redis.call('HINCRBY', G, 'evicted', evicted)
end
if corrupt > 0 then redis.call('HINCRBY', G, 'corrupt', corrupt) end
return {'ok', chunk_id, kept_new, evicted, tokens_s - (gone[S] or 0), gT, over}
"""
)

DELETE = (
    _COMMON
    + r"""
-- ARGV: 1 prefix, 2 stream. Returns 1 if the stream existed.
local S = ARGV[2]
local M = key(S, 'm')
if not (globals_ok() and stream_ok(S)) then
  return redis.error_reply('FSAMEM_CORRUPT a key of stream ' .. S .. ' or a global key holds a foreign type')
end
local known = redis.call('EXISTS', M) == 1 or redis.call('SISMEMBER', STREAMS, S) == 1
if not known then return 0 end
local tokens = tonumber(redis.call('HGET', M, 'tokens')) or 0
local width = tonumber(redis.call('HGET', M, 'width')) or 0
local global = {}
for _, member in ipairs(redis.call('ZRANGE', key(S, 'c'), 0, -1)) do
  global[#global + 1] = S .. '|' .. member
end
batched('ZREM', GC, global, 1000)
for _, bstr in ipairs(redis.call('ZRANGE', key(S, 'fb'), 0, -1)) do
  redis.call('UNLINK', key(S, 'f:' .. bstr))
end
for _, chunk in ipairs(redis.call('ZRANGE', key(S, 'c0'), 0, -1)) do
  redis.call('UNLINK', key(S, 'd:' .. chunk), key(S, 'x:' .. chunk))
end
for suffix, _ in pairs(STREAM_TYPES) do redis.call('UNLINK', key(S, suffix)) end
redis.call('SREM', STREAMS, S)
if tokens > 0 then
  redis.call('HINCRBY', G, 'tokens', -tokens)
  redis.call('HINCRBY', G, 'bytes', -tokens * width)
end
return 1
"""
)

CHUNKS_IN_RANGE = (
    _COMMON
    + r"""
-- ARGV: 1 prefix, 2 stream, 3 since, 4 until. Returns the chunks holding tokens that may lie in the range.
local S, SINCE, UNTIL = ARGV[2], tonumber(ARGV[3]), ARGV[4]
if not (type_ok(key(S, 'c0'), 'zset') and type_ok(key(S, 'c1'), 'zset')) then
  return redis.error_reply('FSAMEM_CORRUPT the chunk index of stream ' .. S .. ' holds a foreign type')
end
local out = {}
for _, chunk in ipairs(redis.call('ZRANGEBYSCORE', key(S, 'c0'), '-inf', UNTIL)) do
  local last = redis.call('ZSCORE', key(S, 'c1'), chunk)
  if last and tonumber(last) >= SINCE then out[#out + 1] = chunk end
end
return out
"""
)
