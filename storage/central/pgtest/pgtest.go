package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable holding an external server's URL.
const EnvURL = "TXSWITCH_TEST_PG_URL"

// readyTimeout bounds how long a starting server may take to accept
// connections (initdb and crash recovery on a loaded 2-core machine).
const readyTimeout = 60 * time.Second

// ErrNoPostgres means neither binaries nor a URL are available.
var ErrNoPostgres = errors.New("pgtest: no PostgreSQL binaries (pg_config --bindir) and " + EnvURL + " not set")

// Server is a private PostgreSQL instance owned by a test binary.
type Server struct {
	binDir  string
	dir     string // temp root: data/ and sock/
	port    int
	cred    *syscall.Credential // nil when not root
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been reaped
	logFile *os.File
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

// URL is the connection URL of database db on s.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, url.PathEscape(db))
}

// Port is the TCP port s listens on (stable across Restart).
func (s *Server) Port() int { return s.port }

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

func binDir() (string, error) {
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	// Debian's pg_config may belong to libpq-dev without server binaries.
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", ErrNoPostgres
}

func newServer() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "txswitch-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	s := &Server{binDir: bin, dir: dir}
	if os.Geteuid() == 0 {
		if s.cred, err = postgresCredential(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := s.init(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if s.port, err = freePort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Restart(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) init() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, "sock")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if s.cred != nil {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return fmt.Errorf("chown %s: %w", d, err)
			}
		}
	}
	cmd := exec.Command(filepath.Join(s.binDir, "initdb"), "-D", s.dataDir(), "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	return nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the postmaster (again) on the same port and data directory
// and waits until it accepts connections. It is a no-op if it is running.
// A start that fails at once (e.g. the previous server's shared memory not
// yet released) is retried until readyTimeout.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.startLocked(deadline)
		if err == nil || !errors.Is(err, errExited) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var errExited = errors.New("postgres exited during start")

func (s *Server) startLocked(deadline time.Time) error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"),
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.port),
		"-k", filepath.Join(s.dir, "sock"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", // test data need not survive an OS crash
		// synchronous_commit stays on: with it off a SIGKILL loses commits
		// still in WAL buffers, and Kill must behave like a real crash of
		// the server process, not like losing the disk.
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=64MB",
	)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig is a backstop if the test binary dies without cleanup (the
	// backends then exit on their own when they see the postmaster gone).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	s.cmd, s.exited, s.logFile = cmd, exited, logf
	if err := s.waitReady(deadline, exited); err != nil {
		s.killLocked()
		if errors.Is(err, errExited) {
			return fmt.Errorf("%w (%v)", err, waitErr) // waitErr is set: exited is closed
		}
		return err
	}
	return nil
}

func (s *Server) waitReady(deadline time.Time, exited <-chan struct{}) error {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			return fmt.Errorf("%w: %s", errExited, tail(log, 1000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %s: %w", readyTimeout, err)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Kill takes the database down abruptly: SIGKILL to the postmaster and every
// child process (no shutdown checkpoint; the next start runs crash
// recovery). Children run in their own sessions, so they are found by
// parent pid, not by process group.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	pm := s.cmd.Process.Pid
	children := childrenOf(pm)
	_ = syscall.Kill(pm, syscall.SIGKILL)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	<-s.exited
	// Wait (bounded) until the children are gone, so that a Restart does not
	// find the old shared memory still attached.
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range children {
		for alive(c) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.finishLocked()
}

// childrenOf lists the pids whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state ppid ...
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// Stop shuts the database down cleanly (fast shutdown: SIGINT).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
		s.finishLocked()
	case <-time.After(30 * time.Second):
		s.killLocked()
	}
}

func (s *Server) finishLocked() {
	s.logFile.Close()
	s.cmd, s.exited, s.logFile = nil, nil, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	s.Kill()
	return os.RemoveAll(s.dir)
}
