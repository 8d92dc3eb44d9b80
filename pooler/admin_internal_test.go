package pooler

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDebugEndpointsOnlyFromLoopback(t *testing.T) {
	h := loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	for addr, want := range map[string]int{
		"127.0.0.1:5555": http.StatusOK, "[::1]:5555": http.StatusOK,
		"10.1.2.3:5555": http.StatusForbidden, "[fd00::1]:5555": http.StatusForbidden, "garbage": http.StatusForbidden,
	} {
		r := httptest.NewRequest(http.MethodGet, "/debug/pools", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("from %s: %d, want %d", addr, w.Code, want)
		}
	}
}
