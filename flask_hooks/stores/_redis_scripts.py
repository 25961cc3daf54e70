"""The Redis store's key layout and Lua scripts: one script per transition, so each is atomic.

Keys of one receiver, all under its ``{ns}`` hash tag (one cluster slot):

- ``d:<id>``, the record hash: ``state``, ``token``, ``lease_until``,
  ``expires_at``, ``reply``, ``outcome``, ``status``, ``ended`` (below) and
  one ``h:<handler>`` per handler that succeeded; a kept delivery adds
  ``type``, ``received_at``, ``secret_index``, ``headers`` (versioned JSON)
  and ``retained_until``;
- ``b:<id>``, a kept delivery's exact body, and ``a:<id>``, its attempts
  (versioned log lines, the newest ``MAX_ATTEMPTS``). Both share the
  record's server TTL, the retention; the body never sits in the hash that
  every claim reads;
- ``i``, the index of kept deliveries: a sorted set, score ``received_at``,
  member id, which no TTL shortens (purges, queries and the claims' sweeps
  drop the members whose delivery is gone); and ``log``, the bounded
  delivery log, newest first.

Every key a script touches is passed in ``KEYS``. Times arrive as strings
formatted in Python (``repr``) and are written back as those strings, never
as Lua numbers, whose formatting would round them; Lua computes only
millisecond TTLs, which are small integers.

redis-py's retry sends a script again when its answer was lost (a timeout
after the server ran it). Each call carries an id made by the client, so a
script that finds its own call's work done answers as the first run did
and writes nothing: a claim finds its token (it answers ``new`` with the
same marks), a completion or release the id it wrote to ``ended`` (it
succeeds, logged once). A second call, with a new id, is refused as
before: a spent token stays spent. Records without ``ended`` (older ones)
read the same.
"""

from __future__ import annotations

# Shared functions, prepended to the scripts that use them.

_LATEST = """
local function latest(...)  -- the largest of the given time strings (false = absent)
  local best = false
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if v and (not best or tonumber(v) > tonumber(best)) then best = v end
  end
  return best
end
local function ttl_ms(until_, now)
  return math.max(1, math.ceil((tonumber(until_) - now) * 1000))
end
"""

# A lease is stale when it ends past the reader's horizon, ``now + lease + skew``: written by
# a clock running ahead. A command that reached the server late (sent before a network
# partition that outlasted the client's retries, then delivered by TCP's retransmission;
# queued behind a stalled server) carries an old ``now``, and would take a lease made
# meanwhile for a stale one: the worker holding it and the next retry would both run the
# handler. So the horizon moves on by as far as the server's clock is past ``now``, when
# that is under an hour (further, one of the two clocks is wrong, and ours decides).
_HORIZON = """
local function horizon(now, given)
  local t = redis.call('TIME')
  local late = tonumber(t[1]) + tonumber(t[2]) / 1000000 - now
  if late > 0 and late < 3600 then return tonumber(given) + late end
  return tonumber(given)
end
"""

# ``longer``: only lengthen a TTL (a renewed lease must not cut the retention short).
_EXPIRE = """
local function expire(keys, ms, longer)
  for _, key in ipairs(keys) do
    local left = redis.call('PTTL', key)
    if left ~= -2 and (not longer or left < ms) then redis.call('PEXPIRE', key, ms) end
  end
end
"""

# A full Redis (``noeviction``, over ``maxmemory``) refuses a script at its first write that
# may need memory, unless a write came before (it cannot stop a script halfway): "only if
# this is the first write in the context of this script" (redis script.c, scriptVerifyOOM).
# HDEL needs none, and of a field no record has it changes nothing. A mark, a renewal or a
# completion records what a handler already did: refused, the handler would run again, so
# they take the little memory they need (a reply is capped at 64 KiB). They answer 1 done,
# 0 when the claim is another's (taken over, or ended), -1 when the record is gone.
_ROOM = """
local function room(key) redis.call('HDEL', key, '') end
"""

_MARKS = """
local function marks(key)
  local out = {'new'}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'h:' then
      out[#out + 1] = string.sub(all[i], 3)
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
"""

# A log line goes to the bounded log and, when its delivery is kept, to its attempts,
# which live as long as the record. ``append(k, a)`` reads KEYS[k..k+2] (log, record,
# attempts) and ARGV[a..a+3] (line, or '' for none; log size; MAX_ATTEMPTS; '1' when
# the line names a delivery).
_APPEND = """
local function append(k, a)
  local log, rec, attempts, line = KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a]
  if line == '' then return end
  redis.call('LPUSH', log, line)
  redis.call('LTRIM', log, 0, tonumber(ARGV[a + 1]) - 1)
  if ARGV[a + 3] == '1' and redis.call('HEXISTS', rec, 'received_at') == 1 then
    redis.call('RPUSH', attempts, line)
    redis.call('LTRIM', attempts, -tonumber(ARGV[a + 2]), -1)
    local left = redis.call('PTTL', rec)
    if left > 0 then redis.call('PEXPIRE', attempts, left) end
  end
end
"""

# KEYS: d, b, a, i. ARGV: now, token, lease_until, expires_at, ttl_ms, horizon, and with a
# delivery to keep: id, type, received_at, secret_index, headers, retained_until, body.
# A lease is live while now < lease_until <= horizon = now + lease + CLOCK_SKEW
# (base.lease_is_live), so a lease written by a clock running ahead is taken over.
CLAIM = (
    _LATEST
    + _HORIZON
    + _EXPIRE
    + _MARKS
    + """
local d = KEYS[1]
local rec = redis.call('HMGET', d, 'state', 'lease_until', 'expires_at', 'reply', 'outcome',
                       'received_at', 'retained_until', 'token')
if rec[1] == 'inflight' and rec[8] == ARGV[2] then return marks(d) end  -- this claim, sent again
local now = tonumber(ARGV[1])
local kept, retained = rec[6], rec[7]
if rec[1] and tonumber(rec[3]) > now then
  if rec[1] == 'done' then
    return {'done', rec[4] or '', rec[5] or ''}
  end
  local lease_until = tonumber(rec[2])
  if rec[1] == 'inflight' and lease_until > now and lease_until <= horizon(now, ARGV[6]) then
    return {'inflight', rec[2]}
  end
elseif kept and retained and tonumber(retained) > now then
  -- No longer a duplicate but still kept: the marks go, the copy and its attempts stay.
  redis.call('HSET', d, 'status', 'in-flight')  -- first write: one a full Redis refuses (OOM)
  for _, field in ipairs(redis.call('HKEYS', d)) do
    if string.sub(field, 1, 2) == 'h:' then redis.call('HDEL', d, field) end
  end
else
  -- A full Redis (noeviction) refuses a script only at a first write that needs memory;
  -- DEL does not, and would let the claim through: the handler would run, then the
  -- completion get a 503 and the retry run it again.
  redis.call('HSET', d, 'status', 'in-flight')
  redis.call('DEL', d, KEYS[2], KEYS[3])
  kept, retained = false, false
end
redis.call('HSET', d, 'state', 'inflight', 'token', ARGV[2], 'lease_until', ARGV[3],
           'expires_at', ARGV[4], 'reply', '', 'outcome', '', 'status', 'in-flight')
if ARGV[8] and not kept then  -- the first copy is kept; a retry's is not
  redis.call('HSET', d, 'type', ARGV[8], 'received_at', ARGV[9], 'secret_index', ARGV[10],
             'headers', ARGV[11])
  redis.call('SET', KEYS[2], ARGV[13])
  redis.call('DEL', KEYS[3])
  redis.call('ZADD', KEYS[4], ARGV[9], ARGV[7])
  kept = true
end
if kept then
  retained = latest(retained, ARGV[12] or false, ARGV[4])
  redis.call('HSET', d, 'retained_until', retained)
  expire({d, KEYS[2], KEYS[3]}, ttl_ms(retained, now), false)
else
  redis.call('PEXPIRE', d, ARGV[5])
end
return marks(d)
"""
)

MARK = (
    _ROOM
    + """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if not rec[1] then return -1 end
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
room(KEYS[1])
redis.call('HSET', KEYS[1], 'h:' .. ARGV[2], ARGV[3])
return 1
"""
)

# KEYS: d, b, a. ARGV: token, lease_until, lease_ms.
# The record (and its kept copy) must outlive the new lease, by our deadline and the server's TTL.
RENEW = (
    _EXPIRE
    + _ROOM
    + """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token', 'expires_at')
if not rec[1] then return -1 end
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
room(KEYS[1])
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
if tonumber(rec[3]) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
end
expire({KEYS[1], KEYS[2], KEYS[3]}, tonumber(ARGV[3]), true)
return 1
"""
)

# KEYS: d, b, a, log, d of entry.id, a of entry.id.
# ARGV: token, reply, outcome, expires_at, ttl_ms, now, line, log_size, max_attempts, kept_too, call.
COMPLETE = (
    _LATEST
    + _EXPIRE
    + _APPEND
    + _ROOM
    + """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token', 'retained_until', 'ended')
if rec[4] == ARGV[11] then return 1 end  -- this completion, sent again
if not rec[1] then return -1 end
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
room(KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'done', 'token', '', 'reply', ARGV[2], 'outcome', ARGV[3],
           'expires_at', ARGV[4], 'status', ARGV[3], 'ended', ARGV[11])
if rec[3] then
  local retained = latest(rec[3], ARGV[4])
  redis.call('HSET', KEYS[1], 'retained_until', retained)
  expire({KEYS[1], KEYS[2], KEYS[3]}, ttl_ms(retained, tonumber(ARGV[6])), false)
else
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
append(4, 7)
return 1
"""
)

# KEYS: d, log, d of entry.id, a of entry.id. ARGV: token, line, log_size, max_attempts, kept_too,
# call. The attempt is logged even when the claim was lost (sent again then, it is logged twice).
RELEASE = (
    _APPEND
    + """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token', 'ended')
if rec[3] == ARGV[6] then return 1 end  -- this release, sent again
if rec[1] == 'inflight' and rec[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'free', 'token', '', 'lease_until', '0', 'status', 'failed',
             'ended', ARGV[6])
end
append(2, 2)
return 1
"""
)

# KEYS: log, d of entry.id, a of entry.id. ARGV: line, log_size, max_attempts, kept_too.
LOG = (
    _APPEND
    + """
append(1, 1)
return 1
"""
)

# KEYS: d, b, a. ARGV: now, token, lease_until, horizon, lease_ms, n, the n handlers to
# rerun, then the handlers to keep (marked, for a completed delivery).
REOPEN = (
    _EXPIRE
    + _HORIZON
    + _MARKS
    + """
local d = KEYS[1]
local rec = redis.call('HMGET', d, 'state', 'lease_until', 'expires_at', 'received_at', 'reply', 'outcome',
                       'token', 'reopened')
if not rec[4] or redis.call('EXISTS', KEYS[2]) == 0 then return {'missing'} end
if rec[1] == 'inflight' and rec[7] == ARGV[2] then  -- this reopening, sent again: answer as it did
  local out = marks(d)
  if rec[8] == '1' then
    out[1] = 'reopened'
    table.insert(out, 2, rec[6] or '')
    table.insert(out, 2, rec[5] or '')
  end
  return out
end
local now, lease_until = tonumber(ARGV[1]), tonumber(rec[2])
if rec[1] == 'inflight' and lease_until > now and lease_until <= horizon(now, ARGV[4]) then
  return {'inflight', rec[2]}
end
local reruns = tonumber(ARGV[6])
if rec[1] == 'done' and reruns == 0 then return {'done', rec[5] or '', rec[6] or ''} end
for i = 7, 6 + reruns do redis.call('HDEL', d, 'h:' .. ARGV[i]) end
if rec[1] == 'done' then  -- the handlers not re-run succeeded: marked where they were not
  for i = 7 + reruns, #ARGV do redis.call('HSETNX', d, 'h:' .. ARGV[i], '') end
end
redis.call('HSET', d, 'state', 'inflight', 'token', ARGV[2], 'lease_until', ARGV[3],
           'status', 'in-flight', 'reopened', rec[1] == 'done' and '1' or '')
if tonumber(rec[3]) < tonumber(ARGV[3]) then  -- a sender's retry waits for the replay
  redis.call('HSET', d, 'expires_at', ARGV[3])
end
expire({d, KEYS[2], KEYS[3]}, tonumber(ARGV[5]), true)
local out = marks(d)
if rec[1] == 'done' then  -- a completed delivery: its reply and outcome, then the marks
  out[1] = 'reopened'
  table.insert(out, 2, rec[6] or '')
  table.insert(out, 2, rec[5] or '')
end
return out
"""
)

# KEYS: d, b, a, i. ARGV: id, now, the latest lease end not stale (now + lease + skew).
FORGET = (
    _HORIZON
    + """
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease_until')
local now, lease_until = tonumber(ARGV[2]), tonumber(rec[2])
if rec[1] == 'inflight' and lease_until > now and lease_until <= horizon(now, ARGV[3]) then
  return {'inflight', rec[2]}
end
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return n
"""
)

# KEYS: i, then d, b, a of each id. ARGV: now, received_before or '', limit, the ids.
# Returns {removed, examined, members dropped from the index}. A member whose record
# is gone (expired by the server) or not kept is dropped without counting.
PURGE = """
local now, before, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local removed, examined, dropped = 0, 0, 0
for i = 4, #ARGV do
  if removed >= limit then break end
  examined = examined + 1
  local k = 3 * (i - 4) + 2
  local rec = redis.call('HMGET', KEYS[k], 'state', 'lease_until', 'retained_until', 'received_at')
  local gone = not rec[4]
  if gone then
    redis.call('DEL', KEYS[k + 1], KEYS[k + 2])
  elseif not (rec[1] == 'inflight' and tonumber(rec[2]) > now)
      and (tonumber(rec[3]) <= now or (before and tonumber(rec[4]) < before)) then
    redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2])
    removed, gone = removed + 1, true
  end
  if gone then
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return {removed, examined, dropped}
"""

# KEYS: i, then d of each id. ARGV: the ids. Drops index members whose delivery is no
# longer kept; checked here, not by the reader, so a delivery kept meanwhile stays listed.
TRIM = """
local dropped = 0
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[i + 1], 'received_at') == 0 then
    dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return dropped
"""
