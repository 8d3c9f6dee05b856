package lab

// BreakDaemon makes Up fail: the named daemon gets a configuration it
// rejects.
func BreakDaemon(c *Config, name string) { c.breakDaemon = name }
