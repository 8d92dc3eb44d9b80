package edge

import (
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// serveWebSocket upgrades a request to a WebSocket and runs a Postgres session over it: each
// binary message carries protocol bytes, in either direction, and the session code is the same
// as for TCP clients (auth, pooling, prepared statements, limits).
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if s.opts.WebSocket == nil || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeMessage(w, http.StatusNotFound, "not found: POST /sql for SQL over HTTP, or a WebSocket upgrade for the Postgres protocol", "")
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Browsers connect from any origin; the API key, not the origin, authenticates.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered the client
	}
	s.opts.Metrics.wsSessions.Inc()
	s.opts.Metrics.wsActive.Inc()
	defer s.opts.Metrics.wsActive.Dec()
	ctx := r.Context()
	conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
	defer conn.Close()
	s.opts.WebSocket(ctx, conn, r.TLS != nil)
}
