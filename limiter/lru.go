package limiter

import "container/list"

// lru is a map of at most max entries that forgets the least recently used first. It does no
// locking: its owner does.
type lru[V any] struct {
	max     int
	entries map[string]*list.Element
	order   list.List // of *lruEntry[V], most recently used at the front
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](max int) lru[V] {
	return lru[V]{max: max, entries: make(map[string]*list.Element)}
}

// get returns the value under k, and marks it used.
func (c *lru[V]) get(k string) (V, bool) {
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[V]).val, true
}

// put sets the value under k, making room if needed.
func (c *lru[V]) put(k string, v V) {
	if e, ok := c.entries[k]; ok {
		e.Value.(*lruEntry[V]).val = v
		c.order.MoveToFront(e)
		return
	}
	for len(c.entries) >= c.max {
		c.remove(c.order.Back())
	}
	c.entries[k] = c.order.PushFront(&lruEntry[V]{key: k, val: v})
}

// delete removes k.
func (c *lru[V]) delete(k string) {
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
}

// deleteIf removes every entry whose value drop returns true for.
func (c *lru[V]) deleteIf(drop func(V) bool) {
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		if drop(e.Value.(*lruEntry[V]).val) {
			c.remove(e)
		}
		e = next
	}
}

func (c *lru[V]) remove(e *list.Element) {
	delete(c.entries, e.Value.(*lruEntry[V]).key)
	c.order.Remove(e)
}
