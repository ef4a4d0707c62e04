-- lib/session.lua: what every session script shares: the names of a record's fields and of the
-- scripts' reply statuses, and the checks of a record read. Package session names the fields and
-- statuses once more in Go (session/fields.go: fieldGen for FIELD_GEN, statusNotFound for
-- STATUS_NOT_FOUND); a test parses this file and checks that both agree.

-- A session is a hash: attributes under "a:<name>", metadata under these fields (layout in
-- session_touch.lua).
local FIELD_CREATED = '_c'   -- created, ms since the epoch
local FIELD_SEEN = '_s'      -- last seen, ms
local FIELD_DEADLINE = '_d'  -- absolute deadline, ms
local FIELD_AUTH = '_a'      -- authenticated at, ms
local FIELD_IDLE = '_i'      -- idle timeout, ms
local FIELD_GEN = '_g'       -- generation: incremented by every rotation
local FIELD_VERSION = '_v'   -- version: incremented by every save; absent means 0
local FIELD_USER = '_u'      -- user ID
local FIELD_IP = '_ip'       -- client IP address
local FIELD_UA = '_ua'       -- user agent
local FIELD_LABEL = '_l'     -- label
local FIELD_PERSIST = '_p'   -- the cookie's persistence: "1" outlives the browser, "0" does not
local FIELD_MOVED_TO = '_r'  -- a rotated session kept for a grace window: the key it moved to
local FIELD_GRACE = '_rg'    -- and the end of that grace window, ms
local FIELD_PENDING = '_pn'  -- a signed-in session stored, not yet live (session_create.lua)

-- Reply statuses: the first element of a reply (each script's header says which it answers).
local STATUS_NOT_FOUND = 0        -- no such session (or signed out, or past its deadline)
local STATUS_OK = 1               -- done
local STATUS_CONFLICT = 2         -- rotated away, another generation, or the new key exists
local STATUS_TOO_LARGE = 3        -- session_save, session_create: over the size cap
local STATUS_VERSION_CHANGED = 3  -- session_seal: a save landed since the record was copied
local STATUS_REREAD_INDEX = 4     -- session_activate: the index changed; read it again
local STATUS_USER_REREAD = -1     -- session_user: the index holds a member not given; read it again
local STATUS_KEEP_SIGNED_OUT = -2 -- session_user: the session to keep is signed out

-- vouched(idx, key, now) reports whether the index idx holds the signed-in session key with a
-- score (its deadline) after now. Without that entry the user was signed out (session_touch.lua
-- says why); without idx, nothing vouches.
local function vouched(idx, key, now)
  local score = idx and redis.call('ZSCORE', idx, key)
  return score and tonumber(score) > now
end

-- live_fields(key, deadline, idle, user, idx, now) is live() given the record's deadline, idle
-- timeout and user as read (strings, or nil for a field the record lacks).
local function live_fields(key, deadline, idle, user, idx, now)
  local d, i = tonumber(deadline), tonumber(idle)
  if not d or not i or i <= 0 then -- (an expiry set in the past would delete the key)
    return nil, nil, redis.error_reply('GATEHOUSE corrupt session record: no deadline or no positive idle timeout')
  end
  if now >= d or (user and not vouched(idx, key, now)) then
    redis.call('DEL', key)
    return nil, nil, {STATUS_NOT_FOUND}
  end
  return d, i
end

-- live(key, rec, idx, now) checks the record rec (its fields by name) read from key, whose tag
-- bucket's index is idx: for a live session it returns the deadline and the idle timeout; for one
-- past its deadline, or signed in and not vouched for, it deletes key and returns nil, nil and the
-- reply {STATUS_NOT_FOUND}; for a record without a deadline or idle timeout, nil, nil and an error
-- reply.
local function live(key, rec, idx, now)
  return live_fields(key, rec[FIELD_DEADLINE], rec[FIELD_IDLE], rec[FIELD_USER], idx, now)
end

-- retire(key, to, now, grace, keep) retires key, whose session moved to the key to: it leaves there
-- a pointer {_r = to, _rg = now + grace} kept keep ms (at least grace). For the grace window (when
-- grace > 0), requests in flight with the old token still read the session through it, and no
-- write goes through; after it, or at once without a grace window, it is a tombstone: every script
-- takes it as no session at all (retired_status), but session_destroy.lua follows it, so that a
-- sign-out by a request that read the session before the rotation ends the session it moved to,
-- and the retiring call, sent again after its reply was lost, finds that it ran (to names a key
-- the caller chose at random before the call).
local function retire(key, to, now, grace, keep)
  redis.call('DEL', key)
  redis.call('HSET', key, FIELD_MOVED_TO, to, FIELD_GRACE, string.format('%d', now + grace))
  redis.call('PEXPIRE', key, string.format('%d', math.max(grace, keep, 1)))
end

-- retired_status(grace, now) is the status for a write on a retired key whose grace deadline (_rg,
-- a string, or nil) is grace: within the window, STATUS_CONFLICT (rotated away); after it, a
-- tombstone, STATUS_NOT_FOUND, as for a key deleted.
local function retired_status(grace, now)
  if (tonumber(grace) or 0) > now then return STATUS_CONFLICT end
  return STATUS_NOT_FOUND
end
