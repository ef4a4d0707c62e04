package session

import (
	"fmt"
	"strings"
	"testing"
)

func TestTokenShape(t *testing.T) {
	tag, err := randomTag()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := newToken(tag)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.valid() || len(tok) != tokenLen || tok.tag() != tag {
		t.Fatalf("newToken = %d characters, valid %v", len(tok), tok.valid())
	}
	for _, bad := range []Token{"", Token(strings.Repeat("a", tokenLen-1)), Token(strings.Repeat("a", tokenLen+1)),
		Token(strings.Repeat("a", tokenLen-1) + "="), Token(strings.Repeat("a", tokenLen-1) + "é"[:1])} {
		if bad.valid() {
			t.Errorf("%q is valid", string(bad))
		}
	}
}

// A token printed by mistake (logs, %v, %#v, errors) does not leak.
func TestTokenRedacted(t *testing.T) {
	tok, _ := newToken("abcd")
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %s %#v", tok, tok, tok), fmt.Sprintf("%+v", struct{ T Token }{tok})} {
		if strings.Contains(s, string(tok)[4:]) {
			t.Errorf("formatted token %q shows its secret", s)
		}
	}
}

func TestKeysOfUserShareTheIndexSlot(t *testing.T) {
	st := &Store{config: config{prefix: DefaultKeyPrefix}}
	tag := st.userTag("user-42")
	tok, _ := newToken(tag)
	k := st.keyOf(tok)
	idx, ok := st.indexOfKey(k)
	if !ok || idx != st.indexOf(tag) {
		t.Fatalf("indexOfKey(%q) = %q, %v", k, idx, ok)
	}
	if strings.Contains(string(k), string(tok)[tagLen:]) {
		t.Error("the storage key holds the token's secret")
	}
	if _, ok := st.indexOfKey("gh:s:{abcd}:s:short"); ok {
		t.Error("indexOfKey accepted a key of the wrong shape")
	}
	keyed := &Store{config: config{prefix: DefaultKeyPrefix, hmacKey: []byte("k")}}
	if keyed.keyOf(tok) == k || keyed.userTag("user-42") == tag && keyed.digest("x", "user-42") == st.digest("x", "user-42") {
		t.Error("WithHMACKey does not change the digests")
	}
}
