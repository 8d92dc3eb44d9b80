package accelerate

import (
	"container/list"
	"sync"
)

// An app sends the same few plans over and over with different params (the plan of
// `user.findUnique({where: {id}})` is the same text for every id), and parsing and decoding a
// plan is most of the CPU a small request costs. planCache keeps decoded plans by their text.
// A decoded plan is shared by concurrent requests, so nothing may change it: the interpreter
// copies the literals it hands out (interpreter.evalArg).

// Bounds of the plan cache: how many plans it keeps, and the largest plan text it keeps (large
// plans carry their data, e.g. a createMany's rows, and rarely repeat).
const (
	planCacheEntries  = 512
	planCacheMaxBytes = 64 << 10
)

type planCache struct {
	mu      sync.Mutex
	lru     *list.List // of *cachedPlan, most recently used first
	entries map[string]*list.Element
}

type cachedPlan struct {
	text     string
	plan     node
	readOnly bool
}

func newPlanCache() *planCache {
	return &planCache{lru: list.New(), entries: map[string]*list.Element{}}
}

// decode returns the decoded plan of text (a JSON object), from the cache when it is there.
// A nil cache decodes every time.
func (c *planCache) decode(text []byte) (plan node, readOnly bool, err error) {
	if c != nil {
		c.mu.Lock()
		if el, ok := c.entries[string(text)]; ok {
			c.lru.MoveToFront(el)
			p := el.Value.(*cachedPlan)
			c.mu.Unlock()
			return p.plan, p.readOnly, nil
		}
		c.mu.Unlock()
	}
	v, err := parseJSON(text)
	if err != nil {
		return nil, false, badRequest(err.Error())
	}
	if plan, err = decodePlan(v); err != nil {
		return nil, false, err
	}
	readOnly = !writes(plan)
	if c != nil && len(text) <= planCacheMaxBytes {
		c.mu.Lock()
		if _, ok := c.entries[string(text)]; !ok {
			p := &cachedPlan{text: string(text), plan: plan, readOnly: readOnly}
			c.entries[p.text] = c.lru.PushFront(p)
			for c.lru.Len() > planCacheEntries {
				old := c.lru.Remove(c.lru.Back()).(*cachedPlan)
				delete(c.entries, old.text)
			}
		}
		c.mu.Unlock()
	}
	return plan, readOnly, nil
}
