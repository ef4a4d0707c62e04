package session

// The fields of a session record, a Redis hash: attributes under attrPrefix + name, metadata under
// the fields below. scripts/lib/session.lua names them once in Lua (FIELD_CREATED for
// fieldCreated, and so on); TestScriptNames checks that both agree.
const (
	attrPrefix = "a:"

	fieldCreated  = "_c"  // created, ms since the epoch
	fieldSeen     = "_s"  // last seen, ms
	fieldDeadline = "_d"  // absolute deadline, ms
	fieldAuth     = "_a"  // authenticated at, ms
	fieldIdle     = "_i"  // idle timeout, ms
	fieldGen      = "_g"  // generation: incremented by every rotation
	fieldVersion  = "_v"  // version: incremented by every save; absent means 0
	fieldUser     = "_u"  // user ID
	fieldIP       = "_ip" // client IP address
	fieldUA       = "_ua" // user agent
	fieldLabel    = "_l"  // label
	fieldPersist  = "_p"  // the cookie's persistence: "1" outlives the browser, "0" does not
	fieldMovedTo  = "_r"  // a rotated session kept for a grace window: the key it moved to
	fieldGrace    = "_rg" // and the end of that grace window, ms
	fieldPending  = "_pn" // a signed-in session stored, not yet live (session_create.lua)
)

// The statuses that lead a session script's reply; each script's header says which it answers.
// lib/session.lua names them once in Lua (STATUS_NOT_FOUND for statusNotFound, and so on).
const (
	statusNotFound       = 0  // no such session (or signed out, or past its deadline)
	statusOK             = 1  // done
	statusConflict       = 2  // rotated away, another generation, or the new key exists
	statusTooLarge       = 3  // session_save, session_create: over the size cap
	statusVersionChanged = 3  // session_seal: a save landed since the record was copied
	statusRereadIndex    = 4  // session_activate: the index changed; read it again
	statusUserReread     = -1 // session_user: the index holds a member not given; read it again
	statusKeepSignedOut  = -2 // session_user: the session to keep is signed out
)
