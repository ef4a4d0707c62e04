package script

import (
	"errors"
	"strings"
	"testing"
)

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"123456789", 0x31C3}, // the CRC-16/XMODEM check value
		{"foo", 12182},
		{"{user1000}.following", Slot("user1000")},
		{"{user1000}.followers", Slot("user1000")},
		{"foo{}{bar}", Slot("foo{}{bar}")}, // empty tag: the whole key
		{"foo{{bar}}zap", Slot("{bar")},
		{"foo{bar}{zap}", Slot("bar")},
	}
	for _, tt := range tests {
		if got := Slot(tt.key); got != tt.want {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestCheckSlots(t *testing.T) {
	if err := checkSlots([]string{"a{x}", "b{x}", "{x}"}); err != nil {
		t.Errorf("keys with one tag: %v", err)
	}
	err := checkSlots([]string{"a{x}", "secret-user-42{y}"})
	if !errors.Is(err, ErrCrossSlot) {
		t.Fatalf("keys with two tags: err = %v, want ErrCrossSlot", err)
	}
	if strings.Contains(err.Error(), "secret-user-42") {
		t.Errorf("error %q names a key", err)
	}
}

// Each embedded script states its contract in a header, so it can be called from another language.
func TestScriptHeaders(t *testing.T) {
	all := Scripts()
	if len(all) == 0 {
		t.Fatal("no embedded scripts")
	}
	for _, s := range all {
		if got, ok := Lookup(s.Name()); !ok || got != s {
			t.Errorf("Lookup(%q) = %v, %v", s.Name(), got, ok)
		}
		if len(s.SHA1()) != 40 {
			t.Errorf("%s: SHA1 %q", s.Name(), s.SHA1())
		}
		head := s.Source()
		if i := strings.Index(head, "\n\n"); i > 0 {
			head = head[:i]
		}
		for _, want := range []string{"-- " + s.Name() + ".lua:", "-- KEYS", "-- ARGV", "-- Reply"} {
			if !strings.Contains(head, want) {
				t.Errorf("%s.lua: header lacks %q", s.Name(), want)
			}
		}
	}
}
