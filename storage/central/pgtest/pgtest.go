package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txswitch/txswitch/storage/central/pgserver"
)

// EnvURL names the environment variable holding an external server's URL.
const EnvURL = "TXSWITCH_TEST_PG_URL"

// ErrNoPostgres means no server binaries were found (tests skip on it
// unless CI=true, or use EnvURL instead).
var ErrNoPostgres = pgserver.ErrNoPostgres

// Server is a private PostgreSQL instance owned by a test binary: a
// pgserver.Server (Kill, Stop, Restart, URL, Port) that can also hand out
// per-test databases.
type Server struct{ *pgserver.Server }

func newServer() (*Server, error) {
	s, err := pgserver.Start(pgserver.Options{}) // own temp dir, fsync off
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the package-wide server, starting it on first use. Stop it
// with StopShared (Main does that for you).
func Shared() (*Server, error) {
	sharedOnce.Do(func() { shared, sharedErr = newServer() })
	return shared, sharedErr
}

// StopShared stops the shared server if it was started.
func StopShared() {
	if shared != nil {
		_ = shared.Close()
	}
}

// Main is a TestMain helper: it runs the tests and then stops the shared
// server, so no postgres outlives the test binary.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// Start returns the URL of a fresh database for this test, dropped at
// cleanup.
func Start(t testing.TB) string {
	t.Helper()
	if base := os.Getenv(EnvURL); base != "" {
		return createDB(t, base)
	}
	s, err := Shared()
	if err != nil {
		skipOrFail(t, err)
	}
	return s.NewDatabase(t)
}

// NewServer starts a private server for one test (for tests that kill it);
// it is removed at cleanup.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := newServer()
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v (install postgresql or set %s)", err, EnvURL)
	}
	t.Fatalf("pgtest: %v", err)
}

// NewDatabase creates a fresh database on s, dropped at cleanup.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	return createDB(t, s.URL("postgres"))
}

func createDB(t testing.TB, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", EnvURL, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: connect admin: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "txswitch_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err) // server may have been killed by the test
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}
