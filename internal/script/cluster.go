package script

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// ErrCrossSlot is returned, wrapped, for a script call whose keys hash to more than one cluster
// slot. Such a call is refused before anything is sent, on every kind of client, so that a key
// layout that would fail on a cluster fails the same way in tests against a single server.
var ErrCrossSlot = errors.New("gatehouse: keys of one script call hash to different cluster slots")

// Slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key's hash tag, the part
// between the first '{' and the first '}' after it when that part is not empty, or of the whole key,
// modulo 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % SlotCount)
}

// checkSlots returns a wrapped ErrCrossSlot when keys do not all share the slot of keys[0].
func checkSlots(keys []string) error {
	if len(keys) < 2 {
		return nil
	}
	_, err := SlotOf(keys)
	return err
}

// SlotOf returns the slot of keys, which must not be empty, or a wrapped ErrCrossSlot when they
// do not all share the slot of keys[0]. The error names key positions and slots, never the keys
// themselves: keys hold user IDs and session hashes.
func SlotOf(keys []string) (int, error) {
	first := Slot(keys[0])
	for i := 1; i < len(keys); i++ {
		if s := Slot(keys[i]); s != first {
			return first, fmt.Errorf("%w: KEYS[1] is in slot %d, KEYS[%d] in slot %d", ErrCrossSlot, first, i+1, s)
		}
	}
	return first, nil
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^s[i]]
	}
	return crc
}

var crc16tab = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// nodeFor returns the client of the node that serves keys[0]. For a single server or a failover
// client, and for a keyless call, that is the client itself (a ClusterClient loads keyless
// SCRIPT LOAD on every shard).
func nodeFor(ctx context.Context, c redis.UniversalClient, keys []string) (redis.Cmdable, error) {
	if len(keys) == 0 {
		return c, nil
	}
	switch cc := c.(type) {
	case *redis.ClusterClient:
		return cc.MasterForKey(ctx, keys[0])
	case *redis.Ring:
		return cc.GetShardClientForKey(keys[0])
	default:
		return c, nil
	}
}

// nodeName identifies a node client for deduplicating loads within one batch.
func nodeName(node redis.Cmdable) string {
	if n, ok := node.(*redis.Client); ok {
		return n.Options().Addr
	}
	return ""
}

// refreshRoutes asks a ClusterClient to reload its slot map after a call failed with no reply from
// Redis (a refused dial, a broken connection, a timeout). go-redis reloads it on MOVED, or every
// ClusterStateReloadInterval (60 s by default); a master that died never answers MOVED, so without
// this every call for its slots would fail until the next periodic reload, long after a replica
// took over. go-redis coalesces reloads, so a burst of failures costs one reload per 200 ms. It
// reports whether it asked for a reload.
func refreshRoutes(c redis.UniversalClient, err error) bool {
	cc, ok := c.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrBadReply) {
		return false // no error, the caller gave up, or Redis answered (a reply of the wrong shape)
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return false // Redis answered: the route works
	}
	cc.ReloadState(context.Background())
	return true
}
