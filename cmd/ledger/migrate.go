package main

import (
	"context"
	"flag"
	"fmt"
)

type migrateCmd struct{ env }

// Run applies the missing schema versions (never down).
func (c *migrateCmd) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+configEnv+" or "+defaultConfigPath+")")
	dsn := fs.String("db", "", "database to migrate instead of LEDGER_DATABASE (a path or a postgres:// URL)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	st, probs, err := loadSettings(configPath(*cfgPath, c.getenv))
	if err != nil {
		return err
	}
	warn(c.stderr, probs)
	if *dsn != "" {
		if err := st.databaseFlag(*dsn); err != nil {
			return err
		}
	}
	applied, want, err := migrate(ctx, st.Database)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(c.stdout, "schema up to date (version %d)\n", want)
		return nil
	}
	fmt.Fprintf(c.stdout, "applied schema versions %v; now at version %d\n", applied, want)
	return nil
}

func warn(w interface{ Write([]byte) (int, error) }, probs []string) {
	for _, p := range probs {
		fmt.Fprintln(w, "ledger: configuration:", p)
	}
}
