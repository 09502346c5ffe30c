// Command procbench times whole processes the way hyperfine does, but
// interleaved: every round runs each command once, in a fresh random order,
// so a burst of load on a shared machine hits all of them alike instead of
// whichever hyperfine happened to be running. It prints medians, the 10th
// and 90th percentiles, and each median's ratio to the first command's.
//
//	procbench [-runs N] [-warmup N] [-json FILE] -- NAME ARGV... [:: NAME ARGV...]...
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
	"time"
)

type command struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
	// Times are in seconds, as hyperfine exports them.
	Times  []float64 `json:"times"`
	Median float64   `json:"median"`
	P10    float64   `json:"p10"`
	P90    float64   `json:"p90"`
	Ratio  float64   `json:"ratio_to_first"`
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
			d, err := run(cmds[i].Argv)
			if err != nil {
				fmt.Fprintf(os.Stderr, "procbench: %s: %v\n", cmds[i].Name, err)
				os.Exit(1)
			}
			if round >= *warmup {
				cmds[i].Times = append(cmds[i].Times, d.Seconds())
			}
		}
	}
	for i := range cmds {
		c := &cmds[i]
		s := append([]float64(nil), c.Times...)
		sort.Float64s(s)
		c.Median, c.P10, c.P90 = pct(s, 50), pct(s, 10), pct(s, 90)
		c.Ratio = c.Median / cmds[0].Median
	}
	fmt.Printf("| command | median | p10 | p90 | median / %s |\n|---|---|---|---|---|\n", cmds[0].Name)
	for _, c := range cmds {
		fmt.Printf("| %s | %.3f ms | %.3f ms | %.3f ms | %.2fx |\n", c.Name, c.Median*1e3, c.P10*1e3, c.P90*1e3, c.Ratio)
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
		cmds = append(cmds, command{Name: cur[0], Argv: cur[1:]})
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

// run times one process. Anything on its stderr fails the benchmark: a
// command that complains is not doing the work being measured.
func run(argv []string) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
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
