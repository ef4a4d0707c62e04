// Package clientip finds a request's client address behind trusted proxies, from the peer's
// address and the forwarding field the proxies set (X-Forwarded-For, or Forwarded of RFC 7239). It
// serves the HTTP middleware (limithttp.ByClientIP) and the gRPC interceptors
// (limitgrpc.ByClientIP), whose docs say what it does for their users.
package clientip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Resolver finds the client address of requests through a set of trusted proxies.
type Resolver struct {
	trusted   []netip.Prefix
	header    string // canonical
	forwarded bool
	bits6     int
}

// Unknown is the identifier of a request whose peer address is empty: all such requests share it.
const Unknown = "unknown"

// New returns a Resolver that trusts the proxies trusted (CIDR prefixes or single addresses),
// reads the field header ("X-Forwarded-For" when empty, or "Forwarded"; any case), and groups
// IPv6 clients by prefixes of ipv6Prefix bits (64 when 0, else 1 to 128). It returns an error for
// anything else.
func New(trusted []string, header string, ipv6Prefix int) (*Resolver, error) {
	c := &Resolver{bits6: ipv6Prefix}
	switch {
	case header == "" || strings.EqualFold(header, "X-Forwarded-For"):
		c.header = "X-Forwarded-For"
	case strings.EqualFold(header, "Forwarded"):
		c.header, c.forwarded = "Forwarded", true
	default:
		return nil, fmt.Errorf("header %q: want X-Forwarded-For or Forwarded", header)
	}
	switch {
	case c.bits6 == 0:
		c.bits6 = 64
	case c.bits6 < 1 || c.bits6 > 128:
		return nil, fmt.Errorf("IPv6Prefix %d: want 1 to 128", ipv6Prefix)
	}
	for _, s := range trusted {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		c.trusted = append(c.trusted, p)
	}
	return c, nil
}

// Header returns the name of the field the Resolver reads, in canonical HTTP form:
// "X-Forwarded-For" or "Forwarded".
func (c *Resolver) Header() string { return c.header }

// Key returns the identifier of the client of a request from the peer address remote (an address
// with or without a port) whose forwarding field has the lines lines: the client address in
// canonical text form, IPv6 as the prefix that holds it; remote itself when it is not an IP
// address (a Unix socket); Unknown when remote is empty, which no net/http server gives but an
// adapter may (an empty identifier would exempt the request from every limit).
func (c *Resolver) Key(remote string, lines []string) string {
	if remote == "" {
		return Unknown
	}
	peer, ok := parseHostPort(remote)
	if !ok {
		return remote
	}
	return c.group(c.resolve(peer, lines))
}

// parseTrusted parses a CIDR prefix or a single address, IPv4-mapped IPv6 as IPv4.
func parseTrusted(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, err
		}
		a = a.WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		// "::ffff:10.0.0.0/8" means 10.0.0.0/8 to whoever writes it, and ::/8 to netip, which
		// would trust no IPv4 proxy and every IPv6 address in ::/8, loopback included.
		if p.Bits() < 96 {
			return p, fmt.Errorf("an IPv4-mapped prefix of %d bits is no IPv4 range (::ffff:0.0.0.0/96 is all of IPv4): write %s/%d, or ::ffff:%s/%d",
				p.Bits(), a.Unmap(), max(p.Bits(), 0), a.Unmap(), 96+p.Bits())
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// resolve returns the client address of a request from remote whose forwarding header has the
// lines values. The field lists the addresses a request passed through, each proxy appending the
// one it received the request from; it is read from the right, the end nearest the server:
// starting from remote, each address that is a trusted proxy passes the turn to the entry it
// appended, and the first address that is not trusted is the client. What lies to its left was
// written by the client or by proxies nobody vouches for, and is never read. When a trusted
// proxy's entry names no address, the client is the proxy that wrote it; when every address is
// trusted, the farthest one named.
func (c *Resolver) resolve(remote netip.Addr, values []string) netip.Addr {
	client := remote
	for i := len(values) - 1; i >= 0; i-- {
		// Entries are split at every comma, quoted or not: none of a proxy's own entries holds one,
		// and a quote the client left open cannot swallow the entries proxies appended after it.
		for rest := values[i]; rest != ""; {
			if !c.trusts(client) {
				return client
			}
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				entry, rest = rest, ""
			}
			entry = trimOWS(entry)
			if entry == "" {
				continue // an empty list element, which RFC 9110 says to ignore
			}
			var a netip.Addr
			var ok bool
			if c.forwarded {
				a, ok = forwardedFor(entry)
			} else {
				a, ok = parseHostPort(entry)
			}
			if !ok {
				return client // the trusted hop that wrote the entry
			}
			client = a
		}
	}
	return client
}

// trusts reports whether a is the address of a trusted proxy.
func (c *Resolver) trusts(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// group returns the identifier of a: an IPv4 address, or the IPv6 prefix that holds it.
func (c *Resolver) group(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(c.bits6)
	if err != nil { // cannot happen: a is IPv6 without a zone, bits6 in 1..128
		return a.String()
	}
	var b [len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")]byte
	return string(p.AppendTo(b[:0]))
}

// parseHostPort parses an address with or without a port ("192.0.2.1", "192.0.2.1:80",
// "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:80"), IPv4-mapped IPv6 as IPv4, without zone.
func parseHostPort(s string) (netip.Addr, bool) {
	// Chosen by shape, so that a well-formed address costs no error value.
	var a netip.Addr
	var err error
	switch {
	case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
		if a, err = netip.ParseAddr(s[1 : len(s)-1]); err == nil && !a.Is6() {
			err = errors.New("IPv4 in brackets")
		}
	case s != "" && s[0] == '[' || strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// errNoAddress is forwardedFor's answer for an element that names no address.
var errNoAddress = errors.New("no address")

// forwardedFor returns the address in the "for" parameter of an RFC 7239 forwarded-element, such
// as `for=192.0.2.43`, `for="[2001:db8:cafe::17]:4711";proto=https` or `by=10.0.0.1;for="_x"`.
// It reports false for an element without exactly one "for", for "unknown" and obfuscated
// identifiers, and for anything malformed.
func forwardedFor(elem string) (netip.Addr, bool) {
	var node string
	found := false
	for rest := elem; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, ";")
		pair = trimOWS(pair)
		if pair == "" {
			continue
		}
		name, value, ok := strings.Cut(pair, "=")
		if !ok || name == "" {
			return netip.Addr{}, false
		}
		if !strings.EqualFold(name, "for") {
			continue
		}
		if found {
			return netip.Addr{}, false // a parameter must not occur twice in an element
		}
		found, node = true, value
	}
	if !found {
		return netip.Addr{}, false
	}
	node, err := unquote(node)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := parseNode(node)
	return a, err == nil
}

// unquote returns the content of an RFC 9110 quoted-string, or s itself when it is not quoted.
func unquote(s string) (string, error) {
	if s == "" || s[0] != '"' {
		if strings.ContainsAny(s, "\"\\") {
			return "", errors.New("quote inside a token")
		}
		return s, nil
	}
	if len(s) < 2 || s[len(s)-1] != '"' {
		return "", errors.New("unterminated quoted-string")
	}
	s = s[1 : len(s)-1]
	if !strings.ContainsAny(s, "\"\\") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			return "", errors.New("quote inside a quoted-string")
		case '\\':
			if i++; i == len(s) {
				return "", errors.New("quoted-string ends in a backslash")
			}
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// parseNode parses an RFC 7239 node: an IPv4 address or a bracketed IPv6 one, each with an
// optional port (digits, or an obfuscated "_" one). "unknown" and obfuscated identifiers
// ("_hidden") are errNoAddress.
func parseNode(node string) (netip.Addr, error) {
	bracketed := strings.HasPrefix(node, "[")
	host, port, hasPort := node, "", false
	if bracketed {
		end := strings.IndexByte(node, ']')
		if end < 0 {
			return netip.Addr{}, errors.New("unclosed bracket")
		}
		host, port = node[1:end], node[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.Addr{}, errors.New("junk after the bracket")
			}
			port, hasPort = port[1:], true
		}
	} else {
		host, port, hasPort = strings.Cut(node, ":")
		if strings.EqualFold(host, "unknown") || strings.HasPrefix(host, "_") {
			return netip.Addr{}, errNoAddress
		}
	}
	if hasPort && !validNodePort(port) {
		return netip.Addr{}, errors.New("bad port")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, err
	}
	// IPv6 only in brackets, IPv4 only outside; no zones.
	if bracketed != a.Is6() || a.Zone() != "" {
		return netip.Addr{}, errors.New("address form")
	}
	return a.Unmap(), nil
}

// validNodePort reports whether p is an RFC 7239 node-port: 1 to 5 digits, or "_" and obfuscated
// characters.
func validNodePort(p string) bool {
	if p == "" {
		return false
	}
	if p[0] == '_' {
		if len(p) == 1 {
			return false
		}
		for i := 1; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return true
	}
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// trimOWS trims the optional whitespace (spaces and tabs) of HTTP field syntax.
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}
