package edge

import (
	"container/list"
	"time"
)

// The exported face of the cache, for the pooler's other HTTP transports (the Prisma
// Accelerate protocol): the same entries and byte budget, with invalidation tags.

// Lookup returns the body cached under key if it is younger than maxAge (fresh) or, not
// fresh, younger than maxAge+staleWhileRevalidate; body is nil when neither holds.
func (c *Cache) Lookup(key string, maxAge, staleWhileRevalidate time.Duration) (body []byte, fresh bool, age time.Duration) {
	body, status, age := c.lookup(key, cachePolicy{maxAge: maxAge, staleWhileRevalidate: staleWhileRevalidate})
	return body, status == cacheHit, age
}

// Store keeps body under key for maxAge+staleWhileRevalidate, findable by its tags.
func (c *Cache) Store(key string, body []byte, maxAge, staleWhileRevalidate time.Duration, tags []string) {
	c.store(key, body, cachePolicy{maxAge: maxAge, staleWhileRevalidate: staleWhileRevalidate}, tags...)
}

// StartRefresh reports whether the caller should revalidate key (one refresh per key at a
// time); a caller that gets true must call EndRefresh.
func (c *Cache) StartRefresh(key string) bool { return c.startRefresh(key) }

// EndRefresh ends a refresh started with StartRefresh.
func (c *Cache) EndRefresh(key string) { c.endRefresh(key) }

// Invalidate removes every entry stored with any of tags and returns how many it removed.
func (c *Cache) Invalidate(tags []string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range tags {
		for el := range c.byTag[t] {
			c.removeLocked(el)
			n++
		}
	}
	return n
}

func (c *Cache) tagLocked(el *list.Element, tags []string) {
	for _, t := range tags {
		set := c.byTag[t]
		if set == nil {
			set = map[*list.Element]struct{}{}
			c.byTag[t] = set
		}
		set[el] = struct{}{}
	}
}

func (c *Cache) untagLocked(el *list.Element, tags []string) {
	for _, t := range tags {
		delete(c.byTag[t], el)
		if len(c.byTag[t]) == 0 {
			delete(c.byTag, t)
		}
	}
}
