package accelerate

import (
	"fmt"
	"strings"
	"testing"
)

// longValuePlan is a plan longer than planHeadBytes whose text differs from another's only at
// its end (as Prisma's plans of one model do).
func longValuePlan(tail string) string {
	return value(`["` + strings.Repeat("shared head ", planHeadBytes/10) + `","` + tail + `"]`)
}

// A request whose plan is cached is read without checking the plan's text again, and only
// then: a plan that starts like a cached one, a cached plan followed by anything but the rest
// of a valid request, and a plan shorter than the index are all read in full.
func TestPlanCacheFindsPlansByTheirText(t *testing.T) {
	c := newPlanCache()
	cached := longValuePlan("a")
	if _, err := c.decode([]byte(cached)); err != nil {
		t.Fatal(err)
	}
	if n := c.startOf([]byte(cached + `,"params":{}}`)); n != len(cached) {
		t.Errorf("a request with the cached plan: startOf = %d, want %d", n, len(cached))
	}
	request := func(plan string) string { return `{"operation":"findMany","plan":` + plan + `,"params":{}}` }
	for _, c2 := range []struct{ plan, want string }{
		{cached, "a"},
		{longValuePlan("b"), "b"}, // same head, another plan
	} {
		q, err := parseQueryRequest([]byte(request(c2.plan)), c)
		if err != nil {
			t.Fatal(err)
		}
		v, err := (&interpreter{}).run(t.Context(), q.plan, q.params)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.([]any)[1]; got != c2.want {
			t.Errorf("plan ending in %q ran as the plan ending in %q", c2.want, got)
		}
	}
	if c.lru.Len() != 2 {
		t.Errorf("%d plans cached, want 2", c.lru.Len())
	}
	for _, bad := range []string{
		`{"operation":"findMany","plan":` + cached + `}}`,
		`{"operation":"findMany","plan":` + cached + `"params":{}}`,
		`{"operation":"findMany","plan":` + cached[:len(cached)-1] + `,"params":{}}`,
	} {
		if _, err := parseQueryRequest([]byte(bad), c); err == nil {
			t.Errorf("accepted %s", bad[len(bad)-20:])
		}
	}
	short := value(`"short"`)
	if _, err := c.decode([]byte(short)); err != nil {
		t.Fatal(err)
	}
	if n := c.startOf([]byte(short + strings.Repeat(" ", planHeadBytes))); n != 0 {
		t.Errorf("a plan shorter than the index found by its text: %d", n)
	}
}

// Evicted plans leave the index of their heads too.
func TestPlanCacheEviction(t *testing.T) {
	c := newPlanCache()
	for i := range planCacheEntries + 10 {
		if _, err := c.decode([]byte(longValuePlan(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if c.lru.Len() != planCacheEntries || len(c.entries) != planCacheEntries {
		t.Errorf("%d plans, %d entries; want %d", c.lru.Len(), len(c.entries), planCacheEntries)
	}
	if len(c.byHead) != 1 || len(c.byHead[longValuePlan("")[:planHeadBytes]]) != planCacheEntries {
		t.Errorf("index of heads: %d heads", len(c.byHead))
	}
	if n := c.startOf([]byte(longValuePlan("0"))); n != 0 {
		t.Error("an evicted plan is still found by its text")
	}
	// Of many plans with one head, the first few are compared (the others are read in full,
	// and decode finds them); a plan found moves to the front.
	first := longValuePlan("10")
	if n := c.startOf([]byte(first)); n != len(first) {
		t.Errorf("the first plan of a head: startOf = %d, want %d", n, len(first))
	}
	last := longValuePlan(fmt.Sprint(planCacheEntries + 9))
	if n := c.startOf([]byte(last)); n != 0 {
		t.Errorf("the %dth plan of a head was compared", planCacheEntries)
	}
	if _, err := c.decode([]byte(last)); err != nil || c.lru.Front().Value.(*cachedPlan).text != last {
		t.Errorf("the last plan of a head is not found by decode: %v", err)
	}
}
