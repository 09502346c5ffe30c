package events

// Verdict records the hook's fleet-policy check at a connect
// (docs/policy.md): how fresh the local mirror of the ledger's verdicts
// was and what it said. Only on connect events, only when POLICY=on.
type Verdict struct {
	// Mirror is "fresh", "stale" (older than POLICY_MAX_AGE), "missing"
	// (never synced) or "damaged" (the user's entry unreadable).
	Mirror string `json:"mirror"`
	// AgeMS is the mirror's age in milliseconds (absent when missing).
	AgeMS int64 `json:"age_ms,omitempty"`
	// StaleMode is POLICY_STALE, set when the mirror was not fresh.
	StaleMode string `json:"stale_mode,omitempty"`
	// Allowed is the outcome of the check: false when it refused the
	// login (the event's refusal says why).
	Allowed bool `json:"allowed"`
	// Reason is the denial's code (quota, expired, time,
	// session_limit, stale), empty when allowed.
	Reason string `json:"reason,omitempty"`
	// Until is when the user's denial lifts by itself (RFC 3339).
	Until string `json:"until,omitempty"`
	// Error says what was wrong with a damaged entry.
	Error string `json:"error,omitempty"`
}
