package accelerate

import (
	"container/list"
	"slices"
	"sync"
	"sync/atomic"
)

// An app sends the same few plans over and over with different params (the plan of
// `user.findUnique({where: {id}})` is the same text for every id), and parsing and decoding a
// plan is most of the CPU a small request costs. planCache keeps decoded plans by their text.
// A decoded plan is shared by concurrent requests, so nothing may change it: the interpreter
// copies the literals it hands out (interpreter.evalArg).
//
// Finding where a plan's text ends in a request means checking it as JSON, which costs about
// as much as the rest of a small request. So the cache also finds a plan by the text a request
// continues with (startOf): a request that continues with the text of a cached plan holds that
// plan, already checked when it was first decoded (a JSON value's text is never the beginning
// of another value's text).

// Bounds of the plan cache: how many plans it keeps, and the largest plan text it keeps (large
// plans carry their data, e.g. a createMany's rows, and rarely repeat).
const (
	planCacheEntries  = 512
	planCacheMaxBytes = 64 << 10
)

// planHeadBytes is how much of a plan's text indexes it for startOf: enough to get past the
// opening every plan has in common, into its SQL. Shorter plans are found by decode alone.
// startOf compares at most planHeadTries plans of one head (the plans of one model's queries
// may share a head), the last found first.
const (
	planHeadBytes = 256
	planHeadTries = 8
)

type planCache struct {
	mu      sync.Mutex
	lru     *list.List // of *cachedPlan, most recently used first
	entries map[string]*list.Element
	byHead  map[string][]*list.Element // plans of planHeadBytes or more, by their first planHeadBytes
}

type cachedPlan struct {
	text     string
	plan     node
	readOnly bool
	// answerSize is the length of the last answer to the plan: the next one is encoded into a
	// buffer of about that size (up to 64 KiB) instead of growing one.
	answerSize atomic.Int64
}

func newPlanCache() *planCache {
	return &planCache{lru: list.New(), entries: map[string]*list.Element{}, byHead: map[string][]*list.Element{}}
}

// startOf returns the length of the cached plan text that data starts with, or 0. A nil
// cache has none.
func (c *planCache) startOf(data []byte) int {
	if c == nil || len(data) < planHeadBytes {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	plans := c.byHead[string(data[:planHeadBytes])]
	for i, el := range plans[:min(len(plans), planHeadTries)] {
		if t := el.Value.(*cachedPlan).text; len(t) <= len(data) && string(data[:len(t)]) == t {
			plans[0], plans[i] = plans[i], plans[0]
			return len(t)
		}
	}
	return 0
}

// decode returns the decoded plan of text (a JSON object), from the cache when it is there.
// A nil cache decodes every time.
func (c *planCache) decode(text []byte) (*cachedPlan, error) {
	if c != nil {
		c.mu.Lock()
		if el, ok := c.entries[string(text)]; ok {
			c.lru.MoveToFront(el)
			p := el.Value.(*cachedPlan)
			c.mu.Unlock()
			return p, nil
		}
		c.mu.Unlock()
	}
	v, err := parseJSON(text)
	if err != nil {
		return nil, badRequest(err.Error())
	}
	plan, err := decodePlan(v)
	if err != nil {
		return nil, err
	}
	p := &cachedPlan{plan: plan, readOnly: !writes(plan)}
	if c != nil && len(text) <= planCacheMaxBytes {
		p.text = string(text)
		c.add(p)
	}
	return p, nil
}

// add keeps p (unless a concurrent request added its text first), evicting the least recently
// used plan beyond planCacheEntries.
func (c *planCache) add(p *cachedPlan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[p.text]; ok {
		return
	}
	el := c.lru.PushFront(p)
	c.entries[p.text] = el
	if len(p.text) >= planHeadBytes {
		head := p.text[:planHeadBytes]
		c.byHead[head] = append(c.byHead[head], el)
	}
	for c.lru.Len() > planCacheEntries {
		old := c.lru.Back()
		text := c.lru.Remove(old).(*cachedPlan).text
		delete(c.entries, text)
		if len(text) >= planHeadBytes {
			head := text[:planHeadBytes]
			if rest := slices.DeleteFunc(c.byHead[head], func(e *list.Element) bool { return e == old }); len(rest) > 0 {
				c.byHead[head] = rest
			} else {
				delete(c.byHead, head)
			}
		}
	}
}
