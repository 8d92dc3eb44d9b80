package session

import (
	"strings"
)

// trackedParams are the session settings the pooler carries between upstream connections:
// the ones PostgreSQL reports with ParameterStatus, so the pooler always knows the value on
// both sides. A client's startup values (and "-c name=value" options) for them are applied
// with SET on whichever connection it lands on, a client's own SET of them follows it into
// later transactions, and another client's SET never leaks into its session. Other startup
// parameters are not passed upstream: on a shared connection they would leak.
var trackedParams = [...]string{"application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone"}

func trackedName(name string) (string, bool) {
	for _, t := range trackedParams {
		if strings.EqualFold(t, name) {
			return t, true
		}
	}
	return "", false
}

// paramDefaults are the tracked parameters' values on fresh upstream connections (so a client
// that asks for nothing keeps, e.g., the pooler's application_name as the database operator sees
// it). Shared by all sessions, never modified.
func paramDefaults(params []serverParam) map[string]string {
	d := map[string]string{"application_name": ""}
	for _, p := range params {
		if name, ok := trackedName(p.name); ok {
			d[name] = p.value
		}
	}
	return d
}

// clientOverrides returns the tracked parameters a new client asks for that differ from the
// defaults (startup parameters and "-c" options), or nil: most clients cost no map.
func clientOverrides(defaults, startup map[string]string) map[string]string {
	var over map[string]string
	set := func(k, v string) {
		if name, ok := trackedName(k); ok && defaults[name] != v {
			if over == nil {
				over = map[string]string{}
			}
			over[name] = v
		}
	}
	for k, v := range parseOptions(startup["options"]) {
		set(k, v)
	}
	for k, v := range startup {
		set(k, v)
	}
	return over
}

// want is the value of tracked parameter name the client should see.
func (s *session) want(name string) string {
	if v, ok := s.overrides[name]; ok {
		return v
	}
	return s.defaults[name]
}

// track records a tracked parameter the client changed itself.
func (s *session) track(name, value string) {
	s.wants = nil
	if s.defaults[name] == value {
		delete(s.overrides, name)
		return
	}
	if s.overrides == nil {
		s.overrides = map[string]string{}
	}
	s.overrides[name] = value
}

// parseOptions reads the "-c name=value" and "--name=value" settings of a startup "options"
// string (space separated, backslash escapes a space or a backslash).
func parseOptions(opts string) map[string]string {
	var words []string
	var cur strings.Builder
	escaped := false
	for _, r := range opts {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	out := map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			w = words[i]
		case strings.HasPrefix(w, "-c"):
			w = w[2:]
		case strings.HasPrefix(w, "--"):
			w = w[2:]
		default:
			continue
		}
		if k, v, ok := strings.Cut(w, "="); ok {
			out[strings.ReplaceAll(k, "-", "_")] = v
		}
	}
	return out
}

// paramSet is the tracked parameters' values a client wants. Sessions that want the
// defaults share one, so a connection last brought to them needs no look for the next such
// client: the usual attach costs one pointer comparison.
type paramSet struct{ vals [len(trackedParams)]string }

// wantedParams returns the session's paramSet.
func (s *session) wantedParams() *paramSet {
	if s.wants != nil {
		return s.wants
	}
	if len(s.overrides) == 0 {
		return s.proxy.defaultParams(s.defaults)
	}
	ps := &paramSet{}
	for i, name := range trackedParams {
		ps.vals[i] = s.want(name)
	}
	s.wants = ps
	return ps
}

// syncParams brings the connection's tracked parameters to what the client wants: a simple
// query that SETs those that differ, whose answers are swallowed (nothing when they agree).
func (s *session) syncParams(u *upstream) {
	ws := s.wantedParams()
	if u.syncedTo == ws {
		return
	}
	u.syncedTo = ws
	var q strings.Builder
	for i, name := range trackedParams {
		if u.params[i] == ws.vals[i] {
			continue
		}
		q.WriteString("SET ")
		q.WriteString(name)
		q.WriteString(" TO '")
		q.WriteString(strings.ReplaceAll(ws.vals[i], "'", "''"))
		q.WriteString("';")
	}
	if q.Len() == 0 {
		return
	}
	u.out = appendMsg(u.out, 'Q', []byte(q.String()), zero)
	u.push(request{kind: reqQueryInjected})
	u.flush()
}
