// Command procbench times whole processes the way hyperfine does, but
// interleaved: every round runs each command once, in a fresh random order,
// so a burst of load on a shared machine hits all of them alike instead of
// whichever hyperfine happened to be running. It prints medians, the 10th
// and 90th percentiles, and each median's ratio to the first command's.
//
//	procbench [-runs N] [-warmup N] [-json FILE] -- NAME STEP [++ STEP]... [:: NAME STEP...]...
//
// A STEP is [KEY=VALUE...] ARGV...: a process, with those variables added to
// procbench's own environment. A command of several steps (a connect and a
// disconnect, say) runs them one after another and is timed from the first
// fork to the last exit; each step's own median is reported too.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

type command struct {
	Name  string `json:"name"`
	Steps []step `json:"steps"`
	// Times are in seconds, as hyperfine exports them.
	Times  []float64 `json:"times"`
	Median float64   `json:"median"`
	P10    float64   `json:"p10"`
	P90    float64   `json:"p90"`
	Ratio  float64   `json:"ratio_to_first"`
}

type step struct {
	Env    []string  `json:"env,omitempty"`
	Argv   []string  `json:"argv"`
	Times  []float64 `json:"times"`
	Median float64   `json:"median"`
}

func main() {
	runs := flag.Int("runs", 300, "measured rounds")
	warmup := flag.Int("warmup", 20, "unmeasured rounds first")
	out := flag.String("json", "", "write results as JSON to this file")
	flag.Parse()
	cmds, err := parse(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "procbench:", err)
		os.Exit(2)
	}
	order := make([]int, len(cmds))
	for i := range order {
		order[i] = i
	}
	for round := 0; round < *warmup+*runs; round++ {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			c := &cmds[i]
			start := time.Now()
			for j := range c.Steps {
				st := &c.Steps[j]
				d, err := run(st.Env, st.Argv)
				if err != nil {
					fmt.Fprintf(os.Stderr, "procbench: %s step %d: %v\n", c.Name, j+1, err)
					os.Exit(1)
				}
				if round >= *warmup {
					st.Times = append(st.Times, d.Seconds())
				}
			}
			if round >= *warmup {
				c.Times = append(c.Times, time.Since(start).Seconds())
			}
		}
	}
	for i := range cmds {
		c := &cmds[i]
		s := append([]float64(nil), c.Times...)
		sort.Float64s(s)
		c.Median, c.P10, c.P90 = pct(s, 50), pct(s, 10), pct(s, 90)
		c.Ratio = c.Median / cmds[0].Median
		for j := range c.Steps {
			st := append([]float64(nil), c.Steps[j].Times...)
			sort.Float64s(st)
			c.Steps[j].Median = pct(st, 50)
		}
	}
	fmt.Printf("| command | median | p10 | p90 | median / %s |\n|---|---|---|---|---|\n", cmds[0].Name)
	for _, c := range cmds {
		fmt.Printf("| %s | %.3f ms | %.3f ms | %.3f ms | %.2fx |\n", c.Name, c.Median*1e3, c.P10*1e3, c.P90*1e3, c.Ratio)
	}
	for _, c := range cmds {
		if len(c.Steps) > 1 {
			fmt.Printf("\n%s, each step's median:", c.Name)
			for j, st := range c.Steps {
				fmt.Printf(" step %d %.3f ms;", j+1, st.Median*1e3)
			}
			fmt.Println()
		}
	}
	if *out != "" {
		b, _ := json.MarshalIndent(map[string]any{"runs": *runs, "results": cmds}, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "procbench:", err)
			os.Exit(1)
		}
	}
}

func parse(args []string) ([]command, error) {
	var cmds []command
	cur := []string{}
	flush := func() error {
		if len(cur) < 2 {
			return fmt.Errorf("each command needs a name and a program, got %q", cur)
		}
		c := command{Name: cur[0]}
		var st step
		for _, a := range append(cur[1:], "++") {
			switch {
			case a == "++":
				if len(st.Argv) == 0 {
					return fmt.Errorf("%s: a step without a program", c.Name)
				}
				c.Steps = append(c.Steps, st)
				st = step{}
			case len(st.Argv) == 0 && isAssignment(a):
				st.Env = append(st.Env, a)
			default:
				st.Argv = append(st.Argv, a)
			}
		}
		cmds = append(cmds, c)
		cur = []string{}
		return nil
	}
	for _, a := range args {
		if a == "::" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, a)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return cmds, nil
}

// isAssignment reports whether a is KEY=VALUE with a shell-like KEY.
func isAssignment(a string) bool {
	k, _, ok := strings.Cut(a, "=")
	if !ok || k == "" {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// run times one process. Anything on its stderr fails the benchmark: a
// command that complains is not doing the work being measured.
func run(env, argv []string) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err == nil && stderr.Len() > 0 {
		err = fmt.Errorf("wrote to stderr: %s", stderr.String())
	}
	return d, err
}

// pct is the p-th percentile of sorted s (nearest rank).
func pct(s []float64, p int) float64 {
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1]
}
