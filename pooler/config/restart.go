package config

// RestartSettings are the settings a running pooler cannot change: the listeners it bound (their
// addresses, TLS on or off, the HTTP listener on or off), the database name clients ask for and
// the pool mode, and the Prisma Accelerate endpoint's settings (it is mounted once and holds open
// transactions). Everything else in Config is applied live by a reload (keys, pool sizes and
// timeouts, pause, upstream address and credentials, the HTTP limits and cache, certificate
// files). This is the one list both sides use: the pooler's reload keeps these from the running
// config (KeepRestartSettings), and the operator hashes them into the pod template, so changing
// one of them rolls the pods and changing anything else never does.
type RestartSettings struct {
	Listen     Listen     `json:"listen"`
	TLS        bool       `json:"tls"`
	Database   string     `json:"database"`
	PoolMode   string     `json:"poolMode"`
	HTTP       bool       `json:"http"`
	Accelerate Accelerate `json:"accelerate"`
	// HTTPReadHeaderTimeout is the HTTP server's (it cannot change while serving).
	HTTPReadHeaderTimeout Duration `json:"httpReadHeaderTimeout"`
}

// RestartSettings returns the restart-only part of c.
func (c *Config) RestartSettings() RestartSettings {
	return RestartSettings{
		Listen:     c.Listen,
		TLS:        c.TLS != nil,
		Database:   c.Database,
		PoolMode:   c.Pool.Mode,
		HTTP:       c.HTTP.Enabled,
		Accelerate: c.HTTP.Accelerate,

		HTTPReadHeaderTimeout: c.HTTP.ReadHeaderTimeout,
	}
}

// KeepRestartSettings sets c's restart-only settings back to those of running (the config a
// pooler was started with) and names the ones that differed, for a reload to log.
func (c *Config) KeepRestartSettings(running *Config) []string {
	var changed []string
	if c.Listen != running.Listen {
		changed = append(changed, "listen")
		c.Listen = running.Listen
	}
	if (c.TLS == nil) != (running.TLS == nil) {
		changed = append(changed, "tls")
		c.TLS = running.TLS
	}
	if c.Database != running.Database {
		changed = append(changed, "database")
		c.Database = running.Database
	}
	if c.Pool.Mode != running.Pool.Mode {
		changed = append(changed, "pool.mode")
		c.Pool.Mode = running.Pool.Mode
	}
	if c.HTTP.Enabled != running.HTTP.Enabled {
		changed = append(changed, "http.enabled")
		c.HTTP.Enabled = running.HTTP.Enabled
	}
	if c.HTTP.Accelerate != running.HTTP.Accelerate {
		changed = append(changed, "http.accelerate")
		c.HTTP.Accelerate = running.HTTP.Accelerate
	}
	if c.HTTP.ReadHeaderTimeout != running.HTTP.ReadHeaderTimeout {
		changed = append(changed, "http.readHeaderTimeout")
		c.HTTP.ReadHeaderTimeout = running.HTTP.ReadHeaderTimeout
	}
	return changed
}
