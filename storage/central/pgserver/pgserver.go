package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txswitch/txswitch/internal/freeport"
)

// readyTimeout bounds how long a starting server may take to accept
// connections (initdb and crash recovery on a loaded 2-core machine).
const readyTimeout = 60 * time.Second

// killWait bounds the wait for a killed server's children to disappear.
const killWait = 10 * time.Second

// ErrNoPostgres means no PostgreSQL server binaries were found.
var ErrNoPostgres = errors.New("pgserver: no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin)")

// Options configure a Server.
type Options struct {
	// Dir holds data/, sock/ and postgres.log; it is created when missing
	// and its data reused when present. Empty: a new temp dir, removed by
	// Close.
	Dir string
	// Port is the loopback TCP port (0: a free one, picked once and kept
	// across Restart).
	Port int
	// Fsync turns fsync and full_page_writes on. Off suits tests and demos
	// whose data need not survive an OS crash; synchronous_commit stays on
	// either way, so a killed server (Kill) never loses a commit it
	// acknowledged.
	Fsync bool
}

// Server is a private PostgreSQL instance.
type Server struct {
	opts    Options
	binDir  string
	dir     string
	tempDir bool
	port    int
	cred    *syscall.Credential // nil when not root
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been reaped
	logFile *os.File
}

// BinDir finds the directory of the server binaries (initdb, postgres).
func BinDir() (string, error) {
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

// Start initialises opts.Dir if needed, starts the server and waits until
// it accepts connections.
func Start(opts Options) (_ *Server, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, binDir: bin, dir: opts.Dir, port: opts.Port}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "txswitch-pg-"); err != nil {
			return nil, fmt.Errorf("pgserver: temp dir: %w", err)
		}
		s.tempDir = true
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if os.Geteuid() == 0 {
		if s.cred, err = postgresCredential(); err != nil {
			return nil, err
		}
	}
	if err := s.init(); err != nil {
		return nil, err
	}
	if s.port == 0 {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgserver: running as root needs a postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// init creates the directories and, on a fresh Dir, the database cluster.
func (s *Server) init() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, "sock")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
		if s.cred != nil {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return fmt.Errorf("pgserver: chown %s: %w", d, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(s.dataDir(), "PG_VERSION")); err == nil {
		return nil // initialised by an earlier run
	}
	cmd := exec.Command(filepath.Join(s.binDir, "initdb"), "-D", s.dataDir(), "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgserver: initdb in %s: %w: %s", s.dataDir(), err, tail(out, 1000))
	}
	return nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// Dir is the directory holding data/, sock/ and postgres.log.
func (s *Server) Dir() string { return s.dir }

// LogPath is the server's log file.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "postgres.log") }

// URL is the connection URL of database db on s.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, url.PathEscape(db))
}

// Port is the TCP port s listens on (stable across Restart).
func (s *Server) Port() int { return s.port }

func freePort() (int, error) {
	p, err := freeport.Port()
	if err != nil {
		return 0, fmt.Errorf("pgserver: %w", err)
	}
	return p, nil
}

// Restart starts the postmaster (again) on the same port and data directory
// and waits until it accepts connections. It is a no-op if it is running;
// a postmaster that died on its own (killed from outside) is replaced.
// A start that fails at once (e.g. the previous server's shared memory not
// yet released) is retried until readyTimeout.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runningLocked() {
		return nil
	}
	if s.cmd != nil {
		s.killLocked() // reap it and whatever children it left
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
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	onOff := map[bool]string{true: "on", false: "off"}[s.opts.Fsync]
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"),
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.port),
		"-k", filepath.Join(s.dir, "sock"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync="+onOff,
		// synchronous_commit stays on: with it off a SIGKILL loses commits
		// still in WAL buffers, and Kill must behave like a real crash of
		// the server process, not like losing the disk.
		"-c", "full_page_writes="+onOff,
		"-c", "max_connections=200",
		"-c", "shared_buffers=64MB",
	)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig is a backstop if the owner dies without Close (the
	// backends then exit on their own when they see the postmaster gone).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgserver: start postgres: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	s.cmd, s.exited, s.logFile = cmd, exited, logf
	if err := s.waitReady(deadline, exited); err != nil {
		s.killLocked()
		if errors.Is(err, errExited) {
			return fmt.Errorf("pgserver: %w (%v)", err, waitErr) // waitErr is set: exited is closed
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
			log, _ := os.ReadFile(s.LogPath())
			return fmt.Errorf("%w: %s", errExited, tail(log, 1000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgserver: postgres not ready after %s: %w", readyTimeout, err)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Running reports whether the postmaster is up (started and not exited).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Server) runningLocked() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
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
	if !s.runningLocked() {
		// Already reaped: its pid may belong to someone else by now. Its
		// backends exit on their own once they see the postmaster gone.
		s.finishLocked()
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
	deadline := time.Now().Add(killWait)
	for _, c := range children {
		for alive(c) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.finishLocked()
}

// CPUTime is the CPU the running server has used so far: the postmaster,
// its live children (backends, WAL writer, checkpointer, ...) and the
// children it has reaped. 0 when not running. Benchmarks subtract two
// readings to see the database's share of a shared machine.
func (s *Server) CPUTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return 0
	}
	pm := s.cmd.Process.Pid
	total := procCPU(pm, true)
	for _, c := range childrenOf(pm) {
		total += procCPU(c, false)
	}
	return total
}

// procCPU reads utime+stime (and the reaped children's, with children)
// from /proc/pid/stat, in USER_HZ (always 100 on Linux) ticks.
func procCPU(pid int, children bool) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0 // exited in between: its time shows in the parent's cutime
	}
	i := strings.LastIndexByte(string(stat), ')')
	// After the command: state(0) ppid ... utime(11) stime(12) cutime(13) cstime(14).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 15 {
		return 0
	}
	fields := f[11:13]
	if children {
		fields = f[11:15]
	}
	var ticks int64
	for _, v := range fields {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100)
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

// Stop shuts the database down cleanly (fast shutdown: SIGINT), killing it
// if it has not stopped after 30 s.
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

// Close stops the server: cleanly when it keeps its data in a Dir of the
// caller's (so the next Start reuses it), abruptly and removing everything
// when its Dir is a temp dir of its own.
func (s *Server) Close() error {
	if !s.tempDir {
		s.Stop()
		return nil
	}
	s.Kill()
	return os.RemoveAll(s.dir)
}
