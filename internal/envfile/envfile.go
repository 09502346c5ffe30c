// Package envfile reads captured script environments (testdata/ocserv-hook-env)
// for tests, benchmarks and the demo: one KEY=VALUE per line, values taken
// verbatim (ocserv's list variables end in a space that matters).
package envfile

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Read returns the variables in path.
func Read(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("read env file %s: line %d is not KEY=VALUE", path, n)
		}
		env[k] = v
	}
	return env, sc.Err()
}

// List turns env into KEY=VALUE strings for exec.Cmd.Env.
func List(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}
