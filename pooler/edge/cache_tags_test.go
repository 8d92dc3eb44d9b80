package edge

import (
	"testing"
	"time"
)

func TestCacheTagsInvalidate(t *testing.T) {
	c := NewCache(1<<20, nil)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	c.Store("a", []byte("A"), time.Minute, 0, []string{"orders", "all"})
	c.Store("b", []byte("B"), time.Minute, 0, []string{"users", "all"})
	c.Store("c", []byte("C"), time.Minute, 0, nil)

	if body, fresh, _ := c.Lookup("a", time.Minute, 0); string(body) != "A" || !fresh {
		t.Fatalf("a: got %q fresh=%v", body, fresh)
	}
	if n := c.Invalidate([]string{"orders"}); n != 1 {
		t.Errorf("invalidate orders removed %d entries, want 1", n)
	}
	if body, _, _ := c.Lookup("a", time.Minute, 0); body != nil {
		t.Errorf("a survived its tag's invalidation")
	}
	if n := c.Invalidate([]string{"all", "orders"}); n != 1 {
		t.Errorf("invalidate all removed %d entries, want 1 (b)", n)
	}
	if body, _, _ := c.Lookup("c", time.Minute, 0); string(body) != "C" {
		t.Errorf("an untagged entry was removed")
	}
	if len(c.byTag) != 0 {
		t.Errorf("tag index keeps %d tags after their entries left", len(c.byTag))
	}

	// Replacing or evicting an entry drops it from the index too.
	c.Store("d", []byte("D"), time.Minute, 0, []string{"t"})
	c.Store("d", []byte("D2"), time.Minute, 0, nil)
	if n := c.Invalidate([]string{"t"}); n != 0 {
		t.Errorf("a replaced entry was still tagged (%d removed)", n)
	}

	// Stale entries are served within stale-while-revalidate, not fresh.
	c.Store("e", []byte("E"), time.Second, time.Minute, nil)
	now = now.Add(5 * time.Second)
	if body, fresh, age := c.Lookup("e", time.Second, time.Minute); string(body) != "E" || fresh || age != 5*time.Second {
		t.Errorf("stale lookup: %q fresh=%v age=%v", body, fresh, age)
	}
}
