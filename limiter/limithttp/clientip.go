package limithttp

import (
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/clientip"
)

// ClientIP configures ByClientIP: where a request's client address is found when proxies stand
// between it and the server.
type ClientIP struct {
	// TrustedProxies lists the proxies in front of the server, each a CIDR prefix ("10.0.0.0/8",
	// "2001:db8::/32") or a single address. An IPv4-mapped prefix is its IPv4 range
	// ("::ffff:10.0.0.0/104" is 10.0.0.0/8); one of fewer than 96 bits, which names no IPv4 range,
	// is an error. The forwarding header is read only on requests from one of them, and only as
	// far as they vouch for it. None: the header is never read, and the client is RemoteAddr.
	TrustedProxies []string
	// Header is the field the trusted proxies set: "X-Forwarded-For" (the default) or "Forwarded"
	// (RFC 7239). The other is never read, since a proxy that sets one passes the other on as the
	// client wrote it.
	Header string
	// IPv6Prefix is how many leading bits of an IPv6 address make one client: 64 by default, since
	// a single host is commonly given a whole /64 and could otherwise take a fresh quota with every
	// address. 128 limits each address.
	IPv6Prefix int
}

// ByClientIP returns a KeyFunc that limits each client address found through the trusted proxies
// of c. The forwarding header lists the addresses a request passed through, each proxy appending
// the one it received the request from; it is read from the right, the end nearest the server:
// starting from RemoteAddr, each address that is a trusted proxy passes the turn to the entry it
// appended, and the first address that is not trusted is the client. What lies to its left was
// written by the client or by proxies nobody vouches for, and is never read, so a client cannot
// choose its identity by sending the header itself. Several header lines are one list, in order.
//
// When a trusted proxy's entry names no address ("unknown", an obfuscated identifier such as
// "_hidden", a malformed entry, a Forwarded element without "for"), the request is limited under
// the proxy that wrote it. When every address is trusted, the farthest one named is the client.
//
// The identifier is the address in its canonical text form: an IPv4 address ("192.0.2.1"), also
// when it came as IPv4-mapped IPv6 ("::ffff:192.0.2.1"), or for IPv6 the prefix of IPv6Prefix bits
// that holds it ("2001:db8:1:2::/64"), zones dropped. A RemoteAddr that is not an IP address (a
// Unix socket) is returned as it is, and an empty one is "unknown", as ByRemoteIP does.
//
// ByClientIP returns an error for an invalid prefix, header name or IPv6Prefix.
func ByClientIP(c ClientIP) (KeyFunc, error) {
	res, err := clientip.New(c.TrustedProxies, c.Header, c.IPv6Prefix)
	if err != nil {
		return nil, fmt.Errorf("limithttp: ByClientIP: %w", err)
	}
	header := res.Header()
	return func(r *http.Request) string { return res.Key(r.RemoteAddr, r.Header[header]) }, nil
}
