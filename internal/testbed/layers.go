package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// privateMounts is the /bin/sh script that prepares the bed's private
// mount namespace, then execs its arguments (ip netns exec … ocserv):
// Options.Layers as read-only overlays, shallowest host directory first,
// then HookAsFwScript's bind mount over /usr/bin/ocserv-fw.
func (b *Bed) privateMounts() (string, error) {
	hosts := make([]string, 0, len(b.opts.Layers))
	for h := range b.opts.Layers {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool {
		if len(hosts[i]) != len(hosts[j]) {
			return len(hosts[i]) < len(hosts[j])
		}
		return hosts[i] < hosts[j]
	})
	var s strings.Builder
	s.WriteString("set -e\n")
	for _, h := range hosts {
		layer := b.opts.Layers[h]
		for _, p := range []string{h, layer} {
			if !filepath.IsAbs(p) || strings.ContainsAny(p, ":,\n") {
				return "", fmt.Errorf("Layers: %q must be an absolute path without ':', ',' or newlines", p)
			}
		}
		if fi, err := os.Stat(layer); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("Layers: %s is not a directory (%v)", layer, err)
		}
		if fi, err := os.Stat(h); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("Layers: host %s is not a directory (%v)", h, err)
		}
		// Two lower layers and no upper one: read-only, layer first.
		fmt.Fprintf(&s, "mount -t overlay ocserv-telemetry-testbed -o %s %s\n",
			shQuote("lowerdir="+layer+":"+h), shQuote(h))
	}
	if b.opts.HookAsFwScript {
		w, err := b.fwScriptWrapper()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&s, "mount --bind %s %s\n", shQuote(w), shQuote(OcservFw))
	}
	s.WriteString(`exec "$@"` + "\n")
	return s.String(), nil
}

// prepareConf runs Options.PrepareConf on the generated ocserv.conf.
func (b *Bed) prepareConf() error {
	if b.opts.PrepareConf == nil {
		return nil
	}
	p, err := b.opts.PrepareConf(b.confPath)
	if err != nil {
		return fmt.Errorf("PrepareConf: %w", err)
	}
	if p != "" {
		b.confPath = p
	}
	return nil
}
