package limiter

import "container/list"

// lru is a map of at most max entries that forgets the least recently used first. It does no
// locking: its owner does.
type lru[K comparable, V any] struct {
	max     int
	entries map[K]*list.Element
	order   list.List // of *lruEntry[K, V], most recently used at the front
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) lru[K, V] {
	return lru[K, V]{max: max, entries: make(map[K]*list.Element)}
}

// get returns the value under k, and marks it used.
func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

// put sets the value under k, making room if needed.
func (c *lru[K, V]) put(k K, v V) {
	if e, ok := c.entries[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		c.order.MoveToFront(e)
		return
	}
	for len(c.entries) >= c.max {
		c.remove(c.order.Back())
	}
	c.entries[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v})
}

// delete removes k.
func (c *lru[K, V]) delete(k K) {
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
}

// deleteIf removes every entry whose value drop returns true for.
func (c *lru[K, V]) deleteIf(drop func(V) bool) {
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		if drop(e.Value.(*lruEntry[K, V]).val) {
			c.remove(e)
		}
		e = next
	}
}

func (c *lru[K, V]) remove(e *list.Element) {
	delete(c.entries, e.Value.(*lruEntry[K, V]).key)
	c.order.Remove(e)
}
