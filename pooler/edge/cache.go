package edge

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cache statuses, sent in the Edgepool-Cache response header.
const (
	cacheHit    = "hit"    // served from the cache, younger than max-age
	cacheStale  = "stale"  // served from the cache within stale-while-revalidate; refreshed in the background
	cacheMiss   = "miss"   // executed and stored
	cacheBypass = "bypass" // asked for caching but not cacheable (a batch, a write, an error)
)

// maxCacheTTL bounds max-age and stale-while-revalidate.
const maxCacheTTL = 24 * time.Hour

// cachePolicy is what a request asked for in its Cache-Control header.
type cachePolicy struct {
	maxAge, staleWhileRevalidate time.Duration
}

// parseCachePolicy reads "Cache-Control: max-age=N[, stale-while-revalidate=M]" (seconds).
// A request opts in with a positive max-age, or with only stale-while-revalidate, in which
// case max-age is defaultTTL. no-cache and no-store opt out. ok is false when the request did
// not opt in.
func parseCachePolicy(h http.Header, defaultTTL time.Duration) (p cachePolicy, ok bool) {
	cc := h.Get("Cache-Control")
	if cc == "" {
		return p, false
	}
	maxAgeSet, swrSet := false, false
	for _, d := range strings.Split(cc, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			return p, false
		case "max-age":
			secs, err := strconv.ParseUint(strings.Trim(value, `"`), 10, 32)
			if err != nil {
				return p, false
			}
			p.maxAge, maxAgeSet = min(time.Duration(secs)*time.Second, maxCacheTTL), true
		case "stale-while-revalidate":
			secs, err := strconv.ParseUint(strings.Trim(value, `"`), 10, 32)
			if err != nil {
				return p, false
			}
			p.staleWhileRevalidate, swrSet = min(time.Duration(secs)*time.Second, maxCacheTTL), true
		}
	}
	if !maxAgeSet && swrSet {
		p.maxAge = defaultTTL
	}
	return p, p.maxAge > 0
}

// cacheKey identifies a cached result: the API key name (so keys never share results), the
// output mode, the query text and the parameter values.
func cacheKey(keyName string, mode outputMode, q query) string {
	h := sha256.New()
	var n [8]byte
	writeField := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	writeField([]byte(keyName))
	writeField([]byte{boolByte(mode.rawText), boolByte(mode.arrayMode)})
	writeField([]byte(q.sql))
	for _, p := range q.params {
		if p == nil {
			h.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // NULL differs from any length
			continue
		}
		writeField(p)
	}
	return string(h.Sum(nil))
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Cache is a byte-bounded LRU of HTTP SQL responses.
type Cache struct {
	maxBytes int64
	metrics  *Metrics
	now      func() time.Time

	mu         sync.Mutex
	bytes      int64
	lru        *list.List // of *cacheEntry, most recently used first
	entries    map[string]*list.Element
	refreshing map[string]bool
	byTag      map[string]map[*list.Element]struct{} // entries stored with tags (cache_tags.go)
}

type cacheEntry struct {
	key       string
	body      []byte
	stored    time.Time
	keepUntil time.Time // stored + max-age + stale-while-revalidate of the request that stored it
	tags      []string  // invalidation tags (cache_tags.go)
}

// entryOverhead approximates the bookkeeping bytes of one entry (key, list element, map slot).
const entryOverhead = 160

func (e *cacheEntry) size() int64 { return int64(len(e.body)+len(e.key)) + entryOverhead }

// NewCache returns a cache holding at most maxBytes of responses. metrics may be nil.
func NewCache(maxBytes int64, metrics *Metrics) *Cache {
	return &Cache{maxBytes: maxBytes, metrics: metrics, now: time.Now, lru: list.New(),
		entries: map[string]*list.Element{}, refreshing: map[string]bool{}, byTag: map[string]map[*list.Element]struct{}{}}
}

// lookup returns a cached body and whether it is fresh (hit) or only usable while it is
// revalidated (stale), judged by this request's policy. A body too old for the request is a miss.
func (c *Cache) lookup(key string, p cachePolicy) (body []byte, status string, age time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, cacheMiss, 0
	}
	e := el.Value.(*cacheEntry)
	now := c.now()
	age = now.Sub(e.stored)
	switch {
	case age < p.maxAge:
		c.lru.MoveToFront(el)
		return e.body, cacheHit, age
	case age < p.maxAge+p.staleWhileRevalidate && now.Before(e.keepUntil):
		c.lru.MoveToFront(el)
		return e.body, cacheStale, age
	}
	if !now.Before(e.keepUntil) {
		c.removeLocked(el)
	}
	return nil, cacheMiss, 0
}

// store keeps body under key, evicting least recently used entries to stay within budget.
// A body larger than an eighth of the budget is not cached, so one result cannot flush all.
func (c *Cache) store(key string, body []byte, p cachePolicy, tags ...string) {
	e := &cacheEntry{key: key, body: body, stored: c.now(), tags: tags}
	e.keepUntil = e.stored.Add(p.maxAge + p.staleWhileRevalidate)
	if e.size() > c.maxBytes/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		c.removeLocked(old)
	}
	for c.bytes+e.size() > c.maxBytes && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
		if c.metrics != nil {
			c.metrics.cacheEvictions.Inc()
		}
	}
	c.entries[key] = c.lru.PushFront(e)
	c.tagLocked(c.entries[key], tags)
	c.bytes += e.size()
	c.updateGaugesLocked()
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	c.untagLocked(el, e.tags)
	delete(c.entries, e.key)
	c.bytes -= e.size()
	c.updateGaugesLocked()
}

func (c *Cache) updateGaugesLocked() {
	if c.metrics != nil {
		c.metrics.cacheBytes.Set(float64(c.bytes))
		c.metrics.cacheEntries.Set(float64(len(c.entries)))
	}
}

// startRefresh reports whether the caller should revalidate key; only one refresh per key runs
// at a time. The caller must call endRefresh.
func (c *Cache) startRefresh(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refreshing[key] {
		return false
	}
	c.refreshing[key] = true
	return true
}

func (c *Cache) endRefresh(key string) {
	c.mu.Lock()
	delete(c.refreshing, key)
	c.mu.Unlock()
}
