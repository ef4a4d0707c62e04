package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// Token is the secret a client holds, in its cookie: 47 characters of base64url, a 4-character slot
// tag followed by 256 bits from crypto/rand. Treat it as a password: it is never stored, logged or
// traced by this package; Redis holds only its hash (Key).
type Token string

// Key is where a session is stored: the Redis key holding the hash of its Token. It identifies a
// session without granting access to it, so it is what to log, show on an "active sessions" page,
// and pass to Store.DestroyKey.
type Key string

const (
	tagLen    = 4  // base64url characters of slot tag: 24 bits
	secretLen = 43 // base64url characters of 256 random bits
	tokenLen  = tagLen + secretLen
)

var b64 = base64.RawURLEncoding

// String returns a redacted form, so that a Token printed by mistake does not leak.
func (t Token) String() string { return "session.Token(redacted)" }

// GoString returns a redacted form for %#v.
func (t Token) GoString() string { return t.String() }

// valid reports whether t has the shape of a token this package issues: the length and alphabet.
func (t Token) valid() bool {
	if len(t) != tokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (t Token) tag() string { return string(t[:tagLen]) }

// newToken returns a fresh token with the given slot tag.
func newToken(tag string) (Token, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("session: reading crypto/rand: %w", err)
	}
	return Token(tag + b64.EncodeToString(secret[:])), nil
}

// randomTag returns a slot tag for an anonymous session.
func randomTag() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: reading crypto/rand: %w", err)
	}
	return b64.EncodeToString(b[:]), nil
}

// digest returns base64url(HMAC-SHA256(key, domain|s)), or of SHA-256 without a key.
func (st *Store) digest(domain, s string) string {
	var out [43]byte
	return string(st.appendDigest(out[:0], domain, s))
}

// appendDigest appends digest(domain, s) to dst.
func (st *Store) appendDigest(dst []byte, domain, s string) []byte {
	var sum [sha256.Size]byte
	if st.hmacKey != nil {
		m := hmac.New(sha256.New, st.hmacKey)
		m.Write([]byte(domain))
		m.Write([]byte(s))
		m.Sum(sum[:0])
	} else {
		h := sha256.New()
		h.Write([]byte(domain))
		h.Write([]byte(s))
		h.Sum(sum[:0])
	}
	return b64.AppendEncode(dst, sum[:])
}

// userTag returns the slot tag of a user's sessions: 24 bits of a digest of the user ID, so that
// all of one user's sessions and their index share a cluster slot.
func (st *Store) userTag(userID string) string {
	return st.digest("gatehouse-user\x00", userID)[:tagLen]
}

// keyOf returns the storage key of a token: "<prefix>{<tag>}:s:<digest of the token>".
func (st *Store) keyOf(t Token) Key {
	var b strings.Builder
	b.Grow(len(st.prefix) + tagLen + 5 + secretLen)
	st.writeKey(&b, t)
	return Key(b.String())
}

// keyAndIndex returns keyOf(t) and the index of its bucket, indexOf(t.tag()), in one allocation:
// every load needs both.
func (st *Store) keyAndIndex(t Token) (Key, string) {
	var b strings.Builder
	n := len(st.prefix) + tagLen + 5 + secretLen
	b.Grow(n + len(st.prefix) + tagLen + 5)
	st.writeKey(&b, t)
	b.WriteString(st.prefix)
	b.WriteByte('{')
	b.WriteString(t.tag())
	b.WriteString("}:ix")
	s := b.String()
	return Key(s[:n]), s[n:]
}

func (st *Store) writeKey(b *strings.Builder, t Token) {
	b.WriteString(st.prefix)
	b.WriteByte('{')
	b.WriteString(t.tag())
	b.WriteString("}:s:")
	var d [secretLen]byte
	b.Write(st.appendDigest(d[:0], "gatehouse-session\x00", string(t)))
}

// indexOf returns the key of the index of a slot tag's bucket.
func (st *Store) indexOf(tag string) string { return st.prefix + "{" + tag + "}:ix" }

// tagOfKey returns the slot tag of a storage key, and whether key has the shape of one of this
// store's keys.
func (st *Store) tagOfKey(k Key) (string, bool) {
	rest, ok := strings.CutPrefix(string(k), st.prefix+"{")
	if !ok || len(rest) != tagLen+4+secretLen || rest[tagLen:tagLen+4] != "}:s:" {
		return "", false
	}
	return rest[:tagLen], true
}

// indexOfKey returns the index key of the bucket a storage key belongs to, and whether key has the
// shape of one of this store's keys.
func (st *Store) indexOfKey(k Key) (string, bool) {
	tag, ok := st.tagOfKey(k)
	if !ok {
		return "", false
	}
	return st.indexOf(tag), true
}
