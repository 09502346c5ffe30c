package config

import (
	"errors"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://h:4222":                    "nats://h:4222",
		"nats://u:pw@h:4222":               "nats://REDACTED@h:4222",
		"nats://tok3n@h":                   "nats://REDACTED@h",
		"tls://u:p%40ss@h:4222":            "tls://REDACTED@h:4222",
		"nats://u:pa/ss@h":                 "nats://REDACTED@h",
		"nats://u:p@ss@h:bad":              "nats://REDACTED@h:bad",
		"u:pw@h":                           "REDACTED@h",
		"ws://h:80/path":                   "ws://h:80/path",
		"nats://u:pw@h:1,nats://u:pw2@h:2": "nats://REDACTED@h:2", // one URL at a time: callers split
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every secret a NATS configuration can hold, planted, never comes out of
// Scrub, RedactedURLs, or a configuration problem (a malformed URL, a
// line without '=', a key misspelt), whatever the shape of the URL.
func TestConfigNeverQuotesNATSSecrets(t *testing.T) {
	const pw, tok = "Pl4nted-pw/x@y", "Pl4ntedT0ken"
	urls := []string{
		"nats://alice:" + pw + "@127.0.0.1:4222",
		"nats://alice:" + strings.ReplaceAll(pw, "/", "%2F") + "@127.0.0.1:4222",
		"tls://" + tok + "@nats.example.com:4222",
		"nats://alice:" + pw + "@127.0.0.1:notaport",
		"bogus://alice:" + pw + "@h",
	}
	secrets := []string{"Pl4nted", tok}
	leaks := func(what, s string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s quotes a secret: %q", what, s)
			}
		}
	}
	for _, u := range urls {
		for _, file := range []string{
			"NATS_URL=" + u + "\n",
			"NATS_URL=nats://ok:4222," + u + "\n",
			"NATS_URL " + u + "\n",
			u + "\n",
			"NATS_URLS=" + u + "\n",
			"NATS_PASSWORD=" + pw + "\nNATS_TOKEN=" + tok + "\nNATS_URL=" + u + "\n",
		} {
			c, probs, err := Parse(strings.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range probs {
				leaks("problem", p.Error())
			}
			leaks("RedactedURLs", c.NATS.RedactedURLs())
			n := c.NATS
			n.Password, n.Token = pw, tok
			n.URLs = append(n.URLs, u)
			leaks("Scrub", n.Scrub("dial "+u+" as alice:"+pw+" with "+tok+" failed: "+strings.ReplaceAll(pw, "/", "%2F")))
			err = n.ScrubError(errors.New("nats: " + u))
			leaks("ScrubError", err.Error())
		}
	}
}
