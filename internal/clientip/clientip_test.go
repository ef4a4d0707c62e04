package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

// trustedForTest are the proxies the tests trust: a private IPv4 range, a single
// address, and an IPv6 range.
var trustedForTest = []string{"10.0.0.0/8", "192.0.2.254", "2001:db8:ffff::/48"}

// keyFunc is a Resolver as the transports use it: the key of a peer address and header fields.
type keyFunc func(remote string, h http.Header) string

func mustResolver(t testing.TB, trusted []string, header string, bits6 int) keyFunc {
	t.Helper()
	c, err := New(trusted, header, bits6)
	if err != nil {
		t.Fatal(err)
	}
	return func(remote string, h http.Header) string { return c.Key(remote, h[c.Header()]) }
}

func TestResolver(t *testing.T) {
	xff := mustResolver(t, trustedForTest, "", 0)
	fwd := mustResolver(t, trustedForTest, "forwarded", 0)
	none := mustResolver(t, nil, "", 0)
	for _, c := range []struct {
		name   string
		key    keyFunc
		remote string
		header string   // X-Forwarded-For or Forwarded, as key reads
		lines  []string // its lines
		want   string
	}{
		// Spoofing: the header of a peer that is not a trusted proxy is never read.
		{"no trusted proxies", none, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "10.0.0.1"},
		{"untrusted peer, XFF", xff, "198.51.100.7:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "198.51.100.7"},
		{"untrusted peer, several XFF lines", xff, "198.51.100.7:4000", "X-Forwarded-For", []string{"10.0.0.2", "203.0.113.9, 10.0.0.3"}, "198.51.100.7"},
		{"untrusted peer, Forwarded", fwd, "198.51.100.7:4000", "Forwarded", []string{"for=203.0.113.9"}, "198.51.100.7"},
		{"untrusted IPv6 peer", xff, "[2001:db8:1:2::7]:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "2001:db8:1:2::/64"},
		// Through trusted proxies, read from the right.
		{"one proxy", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client's own entries ignored", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"trusted hops skipped", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"1.1.1.1, 203.0.113.9, 10.0.0.2, 192.0.2.254"}, "203.0.113.9"},
		{"rightmost untrusted wins", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.1, 198.51.100.2"}, "198.51.100.2"},
		{"several lines are one list", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"1.1.1.1, 203.0.113.9", "10.0.0.3"}, "203.0.113.9"},
		{"lines, client in the first", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9", "10.0.0.3, 10.0.0.4"}, "203.0.113.9"},
		{"empty elements", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9, ,\t, "}, "203.0.113.9"},
		{"every hop trusted", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"10.0.0.9, 10.0.0.2"}, "10.0.0.9"},
		{"no header", xff, "10.0.0.1:4000", "X-Forwarded-For", nil, "10.0.0.1"},
		{"the other header is ignored", fwd, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "10.0.0.1"},
		{"XFF ignores Forwarded", xff, "10.0.0.1:4000", "Forwarded", []string{"for=203.0.113.9"}, "10.0.0.1"},
		// Entries that name no address: the trusted hop that wrote them.
		{"malformed", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9, not-an-ip"}, "10.0.0.1"},
		{"malformed behind a hop", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9, bogus, 10.0.0.2"}, "10.0.0.2"},
		{"unknown", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"unknown"}, "10.0.0.1"},
		{"XFF port", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9:5555"}, "203.0.113.9"},
		{"XFF IPv6 with port", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"[2001:db8:1:2::9]:443"}, "2001:db8:1:2::/64"},
		{"XFF IPv6 bracketed", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"[2001:db8:1:2::9]"}, "2001:db8:1:2::/64"},
		{"XFF bracketed IPv4", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"[203.0.113.9]"}, "10.0.0.1"},
		// IPv6 grouped by /64, IPv4-mapped as IPv4, zones dropped.
		{"IPv6 /64", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"2001:db8:1:2:aaaa:bbbb:cccc:dddd"}, "2001:db8:1:2::/64"},
		{"IPv4-mapped client", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped proxy", xff, "[::ffff:10.0.0.1]:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped hop", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"203.0.113.9, ::ffff:10.0.0.2"}, "203.0.113.9"},
		{"IPv6 proxy", xff, "[2001:db8:ffff::1]:4000", "X-Forwarded-For", []string{"203.0.113.9"}, "203.0.113.9"},
		{"zone", xff, "10.0.0.1:4000", "X-Forwarded-For", []string{"fe80::1%eth0"}, "fe80::/64"},
		{"zoned remote", xff, "[fe80::1%eth0]:4000", "X-Forwarded-For", nil, "fe80::/64"},
		{"remote not an IP", xff, "@", "X-Forwarded-For", []string{"203.0.113.9"}, "@"},
		// RFC 7239.
		{"Forwarded", fwd, "10.0.0.1:4000", "Forwarded", []string{"for=203.0.113.9"}, "203.0.113.9"},
		{"Forwarded quoted with port", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="203.0.113.9:4711"`}, "203.0.113.9"},
		{"Forwarded IPv6", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::/64"},
		{"Forwarded IPv6 no port", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="[2001:db8:cafe::17]"`}, "2001:db8:cafe::/64"},
		{"Forwarded params, any case", fwd, "10.0.0.1:4000", "Forwarded", []string{`proto=https;For="203.0.113.9";by=10.0.0.1`}, "203.0.113.9"},
		{"Forwarded quoted-pair", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="\[2001:db8:cafe::17\]"`}, "2001:db8:cafe::/64"},
		{"Forwarded chain", fwd, "10.0.0.1:4000", "Forwarded", []string{"for=1.1.1.1, for=203.0.113.9;proto=http, for=10.0.0.2"}, "203.0.113.9"},
		{"Forwarded lines", fwd, "10.0.0.1:4000", "Forwarded", []string{"for=203.0.113.9", "for=10.0.0.2;by=10.0.0.1"}, "203.0.113.9"},
		{"Forwarded unknown", fwd, "10.0.0.1:4000", "Forwarded", []string{"for=unknown, for=10.0.0.2"}, "10.0.0.2"},
		{"Forwarded obfuscated", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="_hidden"`}, "10.0.0.1"},
		{"Forwarded obfuscated port", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="203.0.113.9:_p1"`}, "203.0.113.9"},
		{"Forwarded without for", fwd, "10.0.0.1:4000", "Forwarded", []string{"proto=https;by=10.0.0.1"}, "10.0.0.1"},
		{"Forwarded for twice", fwd, "10.0.0.1:4000", "Forwarded", []string{"for=203.0.113.9;for=1.1.1.1"}, "10.0.0.1"},
		{"Forwarded IPv6 unbracketed", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="2001:db8::1"`}, "10.0.0.1"},
		{"Forwarded IPv4 bracketed", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="[203.0.113.9]"`}, "10.0.0.1"},
		{"Forwarded bad port", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="203.0.113.9:123456"`}, "10.0.0.1"},
		{"Forwarded empty port", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="[2001:db8::1]:"`}, "10.0.0.1"},
		{"Forwarded junk after bracket", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="[2001:db8::1]x"`}, "10.0.0.1"},
		{"Forwarded unterminated quote", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="203.0.113.9`}, "10.0.0.1"},
		{"Forwarded zone", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="[fe80::1%eth0]"`}, "10.0.0.1"},
		{"Forwarded pair without value", fwd, "10.0.0.1:4000", "Forwarded", []string{"for"}, "10.0.0.1"},
		{"Forwarded empty pairs", fwd, "10.0.0.1:4000", "Forwarded", []string{";;for=203.0.113.9;"}, "203.0.113.9"},
		// A client that opens a quote cannot swallow the element the proxy appends after it.
		{"Forwarded open quote smuggling", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="1.1.1.1, for=203.0.113.9`}, "203.0.113.9"},
		{"Forwarded quoted comma smuggling", fwd, "10.0.0.1:4000", "Forwarded", []string{`for="1.1.1.1, for=10.0.0.5", for=203.0.113.9`}, "203.0.113.9"},
	} {
		h := http.Header{}
		for _, l := range c.lines {
			h.Add(c.header, l)
		}
		if got := c.key(c.remote, h); got != c.want {
			t.Errorf("%s: %s from %s = %q, want %q", c.name, c.header, c.remote, got, c.want)
		}
	}
}

func TestResolverPrefixAndConfig(t *testing.T) {
	const remote = "10.0.0.1:4000"
	h := http.Header{"X-Forwarded-For": {"2001:db8:1:2:aaaa::1"}}
	for bits, want := range map[int]string{56: "2001:db8:1::/56", 64: "2001:db8:1:2::/64", 128: "2001:db8:1:2:aaaa::1/128", 1: "::/1"} {
		key := mustResolver(t, []string{"10.0.0.1"}, "", bits)
		if got := key(remote, h); got != want {
			t.Errorf("IPv6Prefix %d: %q, want %q", bits, got, want)
		}
	}
	// A trusted prefix written as IPv4-mapped IPv6 trusts the IPv4 range.
	key := mustResolver(t, []string{"::ffff:10.0.0.0/104"}, "", 0)
	if got := key(remote, h); got != "2001:db8:1:2::/64" {
		t.Errorf("IPv4-mapped trusted prefix: %q", got)
	}
	for _, c := range []struct {
		trusted []string
		header  string
		bits6   int
	}{
		{trusted: []string{"10.0.0.0/33"}},
		{trusted: []string{"::ffff:10.0.0.0/8"}}, // ::/8 to netip: no IPv4 trusted, ::1 trusted
		{trusted: []string{"::ffff:0.0.0.0/95"}},
		{trusted: []string{"proxy.internal"}},
		{trusted: []string{""}},
		{header: "X-Real-IP"},
		{bits6: 129},
		{bits6: -1},
	} {
		if _, err := New(c.trusted, c.header, c.bits6); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}

// Whatever the header holds and whatever a client adds to its left, the key is a canonical
// address or prefix; a peer that is not trusted is its own key; and once the walk has found an
// untrusted client, nothing prepended (as a client would send it) changes the answer.
func FuzzClientIP(f *testing.F) {
	for _, s := range [][4]string{
		{"10.0.0.1:80", "203.0.113.9, 10.0.0.2", "", "1.1.1.1"},
		{"10.0.0.1:80", `for="[2001:db8:cafe::17]:4711";proto=https`, "for=10.0.0.2", `for="1.1.1.1`},
		{"[::ffff:10.0.0.1]:80", "::ffff:203.0.113.9", "10.0.0.3", "unknown"},
		{"198.51.100.7:1", "203.0.113.9", "", ""},
		{"10.0.0.1:80", `for=unknown, for="_x"`, ";", `"`},
		{"[2001:db8:ffff::1]:80", "[2001:db8:1:2::9]:443", " , ", `for="\"`},
	} {
		f.Add(s[0], s[1], s[2], s[3], false)
		f.Add(s[0], s[1], s[2], s[3], true)
	}
	f.Fuzz(func(t *testing.T, remote, line1, line2, spoof string, forwarded bool) {
		header := "X-Forwarded-For"
		if forwarded {
			header = "Forwarded"
		}
		c, err := New(trustedForTest, header, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := c.Key(remote, []string{line1, line2})
		peer, ok := parseHostPort(remote)
		if !ok {
			if got != remote {
				t.Fatalf("RemoteAddr %q (not an address): key %q", remote, got)
			}
			return
		}
		if a, err := netip.ParseAddr(got); err == nil {
			if !a.Is4() || a.String() != got {
				t.Fatalf("key %q: not a canonical IPv4 address", got)
			}
		} else if p, err := netip.ParsePrefix(got); err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 64 || p.Masked() != p || p.String() != got {
			t.Fatalf("key %q: not a canonical IPv6 /64", got)
		}
		if !c.trusts(peer) {
			if want := (&Resolver{bits6: 64}).group(peer); got != want {
				t.Fatalf("untrusted peer %v with %s %q, %q: key %q, want %q", peer, header, line1, line2, got, want)
			}
			return
		}
		client := c.resolve(peer, []string{line1, line2})
		if c.trusts(client) {
			return // no untrusted client found: what a client prepends may name one
		}
		for _, lines := range [][]string{{spoof, line1, line2}, {spoof + ", " + line1, line2}} {
			if again := c.resolve(peer, lines); again != client {
				t.Fatalf("%s %q changed the client from %v to %v", header, lines, client, again)
			}
		}
	})
}

// The key alone: a client behind two proxies, IPv4 and IPv6.
func BenchmarkResolver(b *testing.B) {
	key := mustResolver(b, trustedForTest, "", 0)
	for _, xff := range []string{"203.0.113.9, 10.0.0.2", "2001:db8:1:2::9, 10.0.0.2"} {
		h := http.Header{"X-Forwarded-For": {xff}}
		b.Run(xff[:4], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if key("10.0.0.1:4000", h) == "" {
					b.Fatal("no key")
				}
			}
		})
	}
}
