package pgserver_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txswitch/txswitch/storage/central/pgserver"
)

func start(t *testing.T, opts pgserver.Options) *pgserver.Server {
	t.Helper()
	s, err := pgserver.Start(opts)
	if errors.Is(err, pgserver.ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// queryInt runs setup (if any) and then query, which returns one int.
func queryInt(t *testing.T, url, setup, query string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if setup != "" {
		if _, err := conn.Exec(ctx, setup); err != nil {
			t.Fatalf("%s: %v", setup, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestReusesItsDirectory: a server started again on the same Dir (the
// demo's --data-dir) finds its data, and Close of a caller's Dir keeps it.
func TestReusesItsDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	if os.Geteuid() == 0 {
		// The postgres user must reach dir through t.TempDir's 0700 parents.
		for d := filepath.Dir(dir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := start(t, pgserver.Options{Dir: dir})
	port := s.Port()
	if got := queryInt(t, s.URL("postgres"), "CREATE TABLE kept(v int); INSERT INTO kept VALUES (7)", "SELECT sum(v) FROM kept"); got != 7 {
		t.Fatalf("sum = %d", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, pgserver.Options{Dir: dir, Port: port})
	defer s.Close()
	if got := queryInt(t, s.URL("postgres"), "", "SELECT sum(v) FROM kept"); got != 7 {
		t.Fatalf("after a restart on the same dir: sum = %d", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("data dir not kept: %v", err)
	}
}

// TestRestartAfterOutsideKill: a postmaster killed by someone else (the
// demo's "kill -9 the database") is noticed and replaced by Restart.
func TestRestartAfterOutsideKill(t *testing.T) {
	s := start(t, pgserver.Options{})
	defer s.Close()
	pidFile, err := os.ReadFile(filepath.Join(s.Dir(), "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		t.Fatalf("postmaster.pid: %q", pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.Running() {
		if time.Now().After(deadline) {
			t.Fatal("Running still true after the postmaster was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if !s.Running() {
		t.Fatal("not running after Restart")
	}
	if got := queryInt(t, s.URL("postgres"), "", "SELECT 42"); got != 42 {
		t.Fatalf("got %d", got)
	}
}
