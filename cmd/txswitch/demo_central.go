package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/storage/central/pgserver"
)

// The demo's central database (--central-db): the PostgreSQL the leader
// exports the outbox to. "auto" starts a private server in the demo's data
// dir when the server binaries are installed, so the degraded mode can be
// shown by killing it; it is never required — without it the demo runs on
// the replicated journal alone and says so.

const (
	centralAuto = "auto"
	centralOff  = "off"
	// demoDatabase is the database the demo's private server exports to.
	demoDatabase = "txswitch"
	// demoPGPortOffset places the private server at --base-port + 300.
	demoPGPortOffset = 300
)

// demoCentral is the resolved --central-db.
type demoCentral struct {
	url  string           // "" when the demo runs without a central database
	srv  *pgserver.Server // the private server the demo started, if any
	note string           // one line for the intro: what is used and why
}

// startDemoCentral resolves mode ("auto", "off" or a postgres:// URL). In
// auto mode any failure to start a server is reported in note and the demo
// goes on without one: the switch does not need the database to pay.
func startDemoCentral(mode, dir string, basePort int) (*demoCentral, error) {
	switch {
	case mode == centralOff:
		return &demoCentral{note: "Central database: off (--central-db off); the cluster runs on its replicated journal alone."}, nil
	case strings.HasPrefix(mode, "postgres://") || strings.HasPrefix(mode, "postgresql://"):
		u, err := url.Parse(mode)
		if err != nil {
			return nil, fmt.Errorf("--central-db: not a URL: %w", errUsage)
		}
		return &demoCentral{url: mode, note: "Central database: " + u.Redacted() + " (the leader exports to it)."}, nil
	case mode != centralAuto:
		return nil, fmt.Errorf("--central-db must be auto, off or a postgres:// URL, not %q: %w", mode, errUsage)
	}
	bin, err := pgserver.BinDir()
	if errors.Is(err, pgserver.ErrNoPostgres) {
		return &demoCentral{note: "Central database: none — no PostgreSQL server binaries found (pg_config --bindir). " +
			"Install postgresql, or pass --central-db postgres://..., to see the export."}, nil
	}
	if err != nil {
		return nil, err
	}
	pgDir := filepath.Join(dir, "postgres")
	fmt.Printf("Starting a private PostgreSQL for the central database (binaries in %s, data in %s)...\n", bin, pgDir)
	if os.Geteuid() == 0 {
		// The server runs as the postgres user, which must be able to
		// traverse the data dir (a temp dir is created 0700).
		if err := addTraverse(dir); err != nil {
			return &demoCentral{note: "Central database: none — " + err.Error()}, nil
		}
	}
	srv, err := pgserver.Start(pgserver.Options{Dir: pgDir, Port: demoPGPort(basePort), Fsync: true})
	if err != nil {
		return &demoCentral{note: "Central database: none — could not start PostgreSQL: " + oneLine(err.Error())}, nil
	}
	if err := ensureDatabase(srv, demoDatabase); err != nil {
		srv.Close()
		return &demoCentral{note: "Central database: none — " + oneLine(err.Error())}, nil
	}
	return &demoCentral{url: srv.URL(demoDatabase), srv: srv,
		note: fmt.Sprintf("Central database: private PostgreSQL on 127.0.0.1:%d (data in %s, log %s).", srv.Port(), pgDir, srv.LogPath())}, nil
}

// demoPGPort is base+300 when that port is free (a stable psql command
// line), else 0 (any free port).
func demoPGPort(basePort int) int {
	if basePort == 0 {
		return 0
	}
	p := basePort + demoPGPortOffset
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return 0
	}
	ln.Close()
	return p
}

func addTraverse(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, fi.Mode().Perm()|0o011); err != nil {
		return fmt.Errorf("let the postgres user reach %s: %w", dir, err)
	}
	return nil
}

// ensureDatabase creates db on srv unless it exists (a demo restarted on
// the same --data-dir keeps its rows).
func ensureDatabase(srv *pgserver.Server, db string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the private PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// close stops the private server cleanly (its data stays in the data dir).
func (c *demoCentral) close() {
	if c.srv != nil {
		c.srv.Stop()
	}
}

// printIntro says where the rows are and how to look at them, and how to
// show the degraded mode.
func (c *demoCentral) printIntro() {
	fmt.Println(c.note)
	if c.url == "" {
		fmt.Println()
		return
	}
	psql := "psql"
	if _, err := exec.LookPath("psql"); err != nil {
		if bin, err := pgserver.BinDir(); err == nil {
			psql = filepath.Join(bin, "psql")
		}
	}
	u, _ := url.Parse(c.url)
	fmt.Printf(`Look at the exported rows (payments never wait for them; the summary line shows the export lag):
  %s '%s' -c 'SELECT status, count(*), sum(amount_minor) FROM payments GROUP BY status'
  %s '%s' -c 'SELECT last_seq, updated_at FROM export_progress'
`, psql, u.Redacted(), psql, u.Redacted())
	if c.srv != nil {
		fmt.Printf(`Take the database down and bring it back (payments continue, the export backlog grows, then catches up):
  kill -USR1 %d    # toggles: SIGKILL the PostgreSQL server / restart it
`, os.Getpid())
	}
	fmt.Println()
}

// toggleOnSignal kills the private server on SIGUSR1 and restarts it on
// the next one, until ctx ends: the degraded mode on demand. A server
// killed from outside is restarted by the next signal too.
func (c *demoCentral) toggleOnSignal(ctx context.Context) {
	if c.srv == nil {
		return
	}
	ch := make(chan os.Signal, 1) // a signal arriving mid-toggle waits; more are dropped
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			if c.srv.Running() {
				c.srv.Kill()
				fmt.Println("Central database KILLED (SIGKILL). Payments continue; watch the export lag grow. kill -USR1 again to restart it.")
				continue
			}
			fmt.Println("Restarting the central database...")
			if err := c.srv.Restart(); err != nil {
				fmt.Println("Central database restart failed:", oneLine(err.Error()))
				continue
			}
			fmt.Println("Central database is back; the exporter catches up (its breaker probes every 10 s).")
		}
	}()
}

// exportSummary is the export part of the live summary line, from the
// leader. The backlog is the replicated outbox's (always current); the lag
// seconds and breaker are the exporter's, refreshed when it last tried.
func exportSummary(n *cluster.Node) string {
	st, err := n.NodeStatus()
	if err != nil || st.Export == nil {
		return "export off"
	}
	e := st.Export
	s := fmt.Sprintf("export backlog %d", st.Outbox.Backlog)
	if st.Outbox.Backlog > 0 && e.LagSeconds > 0 {
		s += fmt.Sprintf(" (oldest %.1fs)", e.LagSeconds)
	}
	if e.BreakerState != "closed" {
		s += ", database breaker " + e.BreakerState
	}
	return s
}
