package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txswitch/txswitch/storage/central"
)

func init() {
	register("migrate", "show (status) or apply (up) the central database's schema migrations", runMigrate)
}

// runMigrate lets an operator look at and apply the PostgreSQL schema
// migrations outside a node start: nodes apply them at start anyway (one
// at a time, under an advisory lock), but a release's expand phase is
// often run, and checked, before the first node restarts.
func runMigrate(args []string) error {
	fs := newFlags("migrate", "status|up --central-db postgres://... [--json]")
	url := fs.String("central-db", os.Getenv("TXSWITCH_CENTRAL_DB"), "PostgreSQL URL (env TXSWITCH_CENTRAL_DB)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long (an index build on a big table takes a while)")
	if len(args) == 0 || (args[0] != "status" && args[0] != "up") {
		fs.Usage()
		return errUsage
	}
	action := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *url == "" {
		return fmt.Errorf("--central-db is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, *url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	if action == "up" {
		log, err := newLogger("info", true)
		if err != nil {
			return err
		}
		defer func() { _ = log.Sync() }()
		applied, err := central.Migrate(ctx, pool, log)
		if err != nil {
			return err
		}
		if !*asJSON {
			if len(applied) == 0 {
				fmt.Println("schema is current: nothing to apply")
			} else {
				fmt.Printf("applied %d migration(s): %v\n", len(applied), applied)
			}
		}
	}
	st, err := central.MigrationStatus(ctx, pool)
	if err != nil {
		return err
	}
	return printMigrations(os.Stdout, st, *asJSON)
}

func printMigrations(w io.Writer, st []central.MigrationState, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE")
	pending, bad := 0, 0
	for _, m := range st {
		state := "pending"
		switch {
		case m.Applied != nil && !m.ChecksumOK:
			state = "applied, but its file in this binary differs (an applied migration was edited)"
			bad++
		case m.Applied != nil && !m.Known:
			state = "applied " + m.Applied.UTC().Format(time.RFC3339) + " by a newer release"
		case m.Applied != nil:
			state = "applied " + m.Applied.UTC().Format(time.RFC3339)
		default:
			pending++
		}
		fmt.Fprintf(tw, "%04d\t%s\t%s\n", m.Version, m.Name, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d pending\n", pending)
	if bad > 0 {
		return fmt.Errorf("%d applied migration(s) differ from this binary's", bad)
	}
	return nil
}
