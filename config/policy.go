package config

import "time"

// Policy is how this host takes part in fleet policy (docs/policy.md):
// the command service mirrors the ledger's verdicts into the spool
// directory, and the hook refuses denied users from that mirror.
type Policy struct {
	Enabled bool
	// MaxAge: a mirror older than this is stale and Stale applies.
	MaxAge time.Duration
	// Stale is "admit" (decide nothing, flag the event) or "refuse".
	Stale  string
	Bucket string
}

func defaultPolicy() Policy {
	return Policy{MaxAge: 2 * time.Minute, Stale: "admit", Bucket: "OCSERV_POLICY"}
}

func init() {
	for k, f := range map[string]field{
		"POLICY": {"fleet policy: the command service mirrors the ledger's verdicts and the hook refuses denied users: on|off (default off)",
			func(c *Config, v string) error { return setBool(&c.Policy.Enabled, v) }},
		"POLICY_MAX_AGE": {"fleet policy: a verdicts mirror older than this is stale, and POLICY_STALE applies (default 2m)",
			func(c *Config, v string) error {
				return setDuration(&c.Policy.MaxAge, v, 5*time.Second, 7*24*time.Hour)
			}},
		"POLICY_STALE": {"fleet policy: with a stale mirror, admit every login and flag the event (admit, the default) or refuse every login (refuse)",
			func(c *Config, v string) error { return setEnum(&c.Policy.Stale, v, "admit", "refuse") }},
		"POLICY_BUCKET": {"fleet policy: the key-value bucket of verdicts the ledger publishes (default OCSERV_POLICY)",
			func(c *Config, v string) error { return setToken(&c.Policy.Bucket, v) }},
	} {
		fields[k] = f
	}
}
