package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
)

func keygenCmd(g *globals) *cobra.Command {
	var out, name, role string
	var force bool
	c := &cobra.Command{
		Use:   "keygen",
		Short: "make an operator key; prints the line to add to each server's trusted keys file",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if role != "read-only" && role != "read-write" && role != "policy" {
				return usageErr("--role must be read-only, read-write or policy (the fleet ledger's own key, docs/policy.md)")
			}
			if out == "" {
				st, err := loadSettings(g.config, g.getenv, func(string) {})
				if err != nil {
					return err
				}
				out = st.OperatorKey
			}
			kp, err := nkeys.CreateUser()
			if err != nil {
				return err
			}
			seed, _ := kp.Seed()
			pub, _ := kp.PublicKey()
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(out, flags, 0o600)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists; keep it, or pass --force to replace it", out)
			}
			if err != nil {
				return err
			}
			_, err = f.Write(append(seed, '\n'))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			os.Chmod(out, 0o600)
			if g.json {
				return json.NewEncoder(g.stdout).Encode(map[string]string{"public_key": pub, "seed_file": out, "trusted_line": role + " " + pub + " " + name})
			}
			fmt.Fprintf(g.stderr, "seed written to %s (keep it secret; mode 0600)\n", out)
			fmt.Fprintf(g.stderr, "add this line to each server's trusted keys file (CMD_TRUSTED_KEYS):\n")
			fmt.Fprintf(g.stdout, "%s %s %s\n", role, pub, name)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "seed file to write (default OPERATOR_KEY or ~/.config/ocserv-telemetry/operator.nk)")
	c.Flags().StringVar(&name, "name", os.Getenv("USER"), "name to show in the trusted file and audits")
	c.Flags().StringVar(&role, "role", "read-write", "role for the trusted file line: read-only, read-write, or policy (the fleet ledger's key)")
	c.Flags().BoolVar(&force, "force", false, "replace an existing seed file")
	return c
}

func serversCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "servers",
		Short: "discover the servers' command services ($SRV.INFO)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := g.open(false)
			if err != nil {
				return err
			}
			defer s.close()
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			found, err := s.cl.Discover(ctx, discoveryWait(s.timeout))
			if err != nil {
				return err
			}
			if g.json {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(found); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SERVER\tBUILD\tAPI\tACTIONS\tXKEY")
				for _, f := range found {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", clean(f.ServerID), dash(clean(f.Build)), clean(f.Version), len(f.Endpoints), clean(f.XKey))
				}
				tw.Flush()
			}
			if len(found) == 0 {
				return &exitError{exitPartial, errors.New("no server answered discovery")}
			}
			return nil
		},
	}
}
