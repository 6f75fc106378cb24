package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/internal/freeport"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Bounds of the process tier: every wait ends.
const (
	procReadyTimeout = 30 * time.Second
	procExitTimeout  = 10 * time.Second // a SIGTERM'd node drains its API for at most 5 s
	procReapTimeout  = 5 * time.Second  // after SIGKILL
	statusTimeout    = time.Second
	watchEvery       = 100 * time.Millisecond
	// A status older than this is not trusted to say who leads: a dead
	// or unreachable node keeps its last answer in the cache (a paused
	// one is known to be paused). Generous, because on a loaded machine
	// a healthy node can take hundreds of milliseconds to answer.
	statusFresh = 1500 * time.Millisecond
	// resolveWait bounds how long a fault waits for a leader to aim at.
	resolveWait = 5 * time.Second
)

// ProcConfig configures a cluster of real `txswitch node` processes on
// loopback.
type ProcConfig struct {
	// Binary is the txswitch executable (see BuildBinary).
	Binary string
	Nodes  int // default 3
	// Dir holds the data dirs, the routing configuration and each node's
	// log (default: a new temp dir, removed by Close).
	Dir          string
	Seed         uint64
	TickInterval time.Duration
	// LogLevel is the nodes' log level (default warn).
	LogLevel string
	Logger   *zap.Logger
	// CentralDB is the PostgreSQL URL the nodes export to ("": none).
	CentralDB string
}

// ProcCluster is a running cluster of node processes, the simulated PSPs
// they call (in this process, so their ledgers are read directly as
// evidence independent of the switch) and the toxiproxy links between the
// nodes. Close kills every process; each process also dies with this one
// (Pdeathsig), so an interrupted run leaves no orphan.
type ProcCluster struct {
	cfg  ProcConfig
	Sims map[string]*sim.Server
	// APIKey is the merchant's key, AdminToken the admin API's.
	APIKey, AdminToken, MerchantID string
	Net                            *Network

	baseArgs []string // every node's flags but its own addresses, dir and members
	tempDir  bool
	http     *http.Client

	mu     sync.Mutex
	procs  []*Proc // slots: the bootstrap members, then nodes that joined
	closed bool

	stopWatch context.CancelFunc
	watchWG   sync.WaitGroup
}

// Proc is one node process slot. Restarts reuse the slot (same dir, same
// addresses, same member id); a node that rejoins after a wipe gets a new
// slot.
type Proc struct {
	Slot    int
	APIAddr string
	dir     string
	args    []string
	logPath string

	mu      sync.Mutex
	id      uint64
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process was reaped
	exitErr error
	paused  bool
	retired bool // wiped: the slot never runs again
	polling bool // a status read is in flight
	// stopping is set when this runner signals the process to end: an
	// exit without it is a crash.
	stopping bool
	// last is the latest status read, lastAt when.
	last   *cluster.Status
	lastAt time.Time
}

// BuildBinary builds cmd/txswitch into dir and returns its path. It runs
// `go build` in the current directory, which must be inside the module.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "txswitch")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/txswitch/txswitch/cmd/txswitch")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build txswitch: %w: %s", err, b)
	}
	return out, nil
}

// StartProcs starts the PSPs, the links and the node processes, and waits
// for a leader and the routing configuration on every node.
func StartProcs(ctx context.Context, cfg ProcConfig) (_ *ProcCluster, err error) {
	if cfg.Binary == "" {
		return nil, errors.New("process cluster: no txswitch binary")
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	c := &ProcCluster{cfg: cfg, Sims: map[string]*sim.Server{}, MerchantID: "mer_demo", Net: NewNetwork(),
		APIKey: randomToken("sk_proc_"), AdminToken: randomToken("adm_"),
		http: &http.Client{Timeout: statusTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.cfg.Dir == "" {
		if c.cfg.Dir, err = os.MkdirTemp("", "txswitch-procs-"); err != nil {
			return nil, err
		}
		c.tempDir = true
	}

	urls := map[string]string{}
	secrets := map[string]string{}
	for j, name := range txswitch.DefaultProviderNames() {
		secret := randomToken("whsec_")
		s := sim.New(sim.Config{Name: name, Seed: cfg.Seed + uint64(j) + 1, NotifySecret: secret, Logger: cfg.Logger.Named(name)})
		addr, err := s.Start("127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("start simulated PSP %s: %w", name, err)
		}
		c.Sims[name], urls[name], secrets[name] = s, "http://"+addr, secret
	}
	routing := txswitch.DefaultConfig([]txswitch.MerchantConfig{{
		ID: c.MerchantID, Name: "Process Shop", APIKeyHashes: []string{txswitch.HashAPIKey(c.APIKey)},
	}}, urls)
	rb, err := json.Marshal(routing)
	if err != nil {
		return nil, fmt.Errorf("encode routing config: %w", err)
	}
	routingPath := filepath.Join(c.cfg.Dir, "routing.json")
	if err := os.WriteFile(routingPath, rb, 0o600); err != nil {
		return nil, fmt.Errorf("write routing config: %w", err)
	}
	c.baseArgs = []string{"--admin-token", c.AdminToken, "--routing-config", routingPath, "--log-level", cfg.LogLevel}
	if cfg.TickInterval > 0 {
		c.baseArgs = append(c.baseArgs, "--tick", cfg.TickInterval.String())
	}
	for name, s := range secrets {
		c.baseArgs = append(c.baseArgs, "--provider-secret", name+"="+s)
	}
	if cfg.CentralDB != "" {
		c.baseArgs = append(c.baseArgs, "--central-db", cfg.CentralDB)
	}

	// Each node gets its own member list: its peers' raft addresses are
	// its own links to them. Bootstrap entries stay local to each node
	// (raft compares their index and term, never their content), so every
	// node dials the others through the links that belong to it.
	n := cfg.Nodes
	raft := make([]string, n)
	api := make([]string, n)
	for i := range n {
		if raft[i], err = freeAddr(); err != nil {
			return nil, err
		}
		if api[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	for i := range n {
		var peers []string
		for j := range n {
			addr := raft[j]
			if j != i {
				if addr, err = c.Net.AddLink(i, j, raft[j]); err != nil {
					return nil, err
				}
			}
			peers = append(peers, "--peer", fmt.Sprintf("%d,%s,%s", j+1, addr, api[j]))
		}
		dir := filepath.Join(c.cfg.Dir, "node"+strconv.Itoa(i+1))
		args := append([]string{"node", "--id", strconv.Itoa(i + 1), "--data-dir", dir,
			"--raft-listen", raft[i], "--api-listen", api[i]}, c.baseArgs...)
		p := &Proc{Slot: i, APIAddr: api[i], dir: dir, id: uint64(i + 1), args: append(args, peers...),
			logPath: filepath.Join(c.cfg.Dir, "node"+strconv.Itoa(i+1)+".log")}
		c.procs = append(c.procs, p)
	}
	for _, p := range c.procs {
		if err := c.start(p); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	c.stopWatch = cancel
	c.watchWG.Go(func() { c.watch(wctx) })
	if err := c.WaitReady(ctx, procReadyTimeout); err != nil {
		return nil, err
	}
	return c, nil
}

// start runs p's process (its slot must not be running).
func (c *ProcCluster) start(p *Proc) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("process cluster closed")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("node log: %w", err)
	}
	cmd := exec.Command(c.cfg.Binary, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C at the terminal reaches the runner,
	// which kills the nodes itself; Pdeathsig kills them if the runner
	// dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start n%d: %w", p.Slot+1, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.exitErr, p.paused, p.last, p.stopping = cmd, done, nil, false, nil, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Running reports whether the slot's process is alive (paused counts).
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil || p.retired {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ID is the slot's member id (0 until a joined node reported it).
func (p *Proc) ID() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.id
}

// Pid is the current process id (0 when not started).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Status returns the latest status read and whether it is fresh.
func (p *Proc) Status() (*cluster.Status, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.last != nil && time.Since(p.lastAt) < statusFresh
}

// Paused reports whether the process is stopped by SIGSTOP.
func (p *Proc) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

func (p *Proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		p.stopping = true
	}
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("n%d has no process", p.Slot+1)
	}
	// os.Process.Signal refuses a process already reaped, so a reused
	// pid is never signalled.
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%v to n%d (pid %d): %w", sig, p.Slot+1, cmd.Process.Pid, err)
	}
	return nil
}

// wait waits (bounded) until the current process was reaped.
func (p *Proc) wait(d time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("n%d did not exit within %v", p.Slot+1, d)
	}
}

// Kill sends SIGKILL and waits until the process was reaped.
func (c *ProcCluster) Kill(p *Proc) error {
	if !p.Running() {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(procReapTimeout)
}

// Terminate sends SIGTERM (the node stops gracefully) and waits; a node
// that does not exit in time is killed and the error says so.
func (c *ProcCluster) Terminate(p *Proc) error {
	if !p.Running() {
		return nil
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := p.wait(procExitTimeout); err != nil {
		_ = c.Kill(p)
		return fmt.Errorf("graceful stop: %w (killed)", err)
	}
	return nil
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (c *ProcCluster) Pause(p *Proc) error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	return nil
}

// Resume sends SIGCONT.
func (c *ProcCluster) Resume(p *Proc) error {
	p.mu.Lock()
	paused := p.paused
	p.paused = false
	p.mu.Unlock()
	if !paused {
		return nil
	}
	return p.signal(syscall.SIGCONT)
}

// Restart starts a stopped slot again on its data dir and addresses.
func (c *ProcCluster) Restart(p *Proc) error {
	if p.Running() {
		return fmt.Errorf("n%d is running", p.Slot+1)
	}
	p.mu.Lock()
	retired := p.retired
	p.mu.Unlock()
	if retired {
		return fmt.Errorf("n%d was wiped and replaced", p.Slot+1)
	}
	return c.start(p)
}

// Procs returns every slot, running or not.
func (c *ProcCluster) Procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.procs...)
}

// tick is the nodes' raft tick.
func (c *ProcCluster) tick() time.Duration {
	if c.cfg.TickInterval > 0 {
		return c.cfg.TickInterval
	}
	return 100 * time.Millisecond // cmd/txswitch node's default
}

// Size is the number of bootstrap members.
func (c *ProcCluster) Size() int { return c.cfg.Nodes }

// Running returns the slots whose process is alive (paused included).
func (c *ProcCluster) Running() []*Proc {
	var out []*Proc
	for _, p := range c.Procs() {
		if p.Running() {
			out = append(out, p)
		}
	}
	return out
}

// Leader returns the running, unpaused slot that most recently said it
// leads at the highest term, or nil.
func (c *ProcCluster) Leader() *Proc {
	var best *Proc
	var term uint64
	for _, p := range c.Running() {
		st, fresh := p.Status()
		if !fresh || p.Paused() || st.Raft.State != "StateLeader" {
			continue
		}
		if st.Raft.Term >= term {
			best, term = p, st.Raft.Term
		}
	}
	return best
}

// Resolve maps a node target to a slot: "leader", "follower" (the first
// running follower after the leader) or "n1".."nN" (bootstrap slots).
func (c *ProcCluster) Resolve(ctx context.Context, target string) (*Proc, error) {
	procs := c.Procs()
	lead := c.Leader()
	if lead == nil && (target == "leader" || target == "follower") {
		lead = c.waitLeader(ctx, resolveWait)
	}
	switch {
	case target == "leader":
		if lead == nil {
			return nil, errors.New("no leader")
		}
		return lead, nil
	case target == "follower":
		if lead == nil {
			return nil, errors.New("no leader to pick a follower of")
		}
		for k := 1; k < len(procs); k++ {
			p := procs[(lead.Slot+k)%len(procs)]
			if p.Running() && !p.Paused() {
				return p, nil
			}
		}
		return nil, errors.New("no running follower")
	case strings.HasPrefix(target, "n"):
		i, err := strconv.Atoi(target[1:])
		if err != nil || i < 1 || i > c.cfg.Nodes {
			return nil, fmt.Errorf("node target %q: want n1..n%d", target, c.cfg.Nodes)
		}
		return procs[i-1], nil
	}
	return nil, fmt.Errorf("unknown node target %q (leader, follower, n1..n%d)", target, c.cfg.Nodes)
}

// waitLeader waits (bounded) for a leader: a fault aimed at the leader
// may fire in the middle of an election.
func (c *ProcCluster) waitLeader(ctx context.Context, d time.Duration) *Proc {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := c.Leader(); l != nil {
			return l
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// watch keeps every running node's status fresh: each node is polled on
// its own (at most one read in flight per node, each bounded by
// statusTimeout), so a slow or paused node delays no one.
func (c *ProcCluster) watch(ctx context.Context) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		for _, p := range c.Running() {
			p.mu.Lock()
			skip := p.paused || p.polling
			p.polling = p.polling || !skip
			p.mu.Unlock()
			if skip {
				continue
			}
			wg.Go(func() {
				st, err := c.ReadStatus(ctx, p.APIAddr)
				p.mu.Lock()
				defer p.mu.Unlock()
				p.polling = false
				if err != nil {
					return
				}
				p.last, p.lastAt = &st, time.Now()
				if p.id == 0 {
					p.id = st.Raft.ID
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ReadStatus reads a node's GET /v1/admin/status.
func (c *ProcCluster) ReadStatus(ctx context.Context, apiAddr string) (cluster.Status, error) {
	var st cluster.Status
	code, body, err := c.adminDo(ctx, c.http, http.MethodGet, apiAddr, "/v1/admin/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("status of %s: %d %s", apiAddr, code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decode status of %s: %w", apiAddr, err)
	}
	return st, nil
}

// adminDo sends one admin request; hc's timeout and ctx bound it.
func (c *ProcCluster) adminDo(ctx context.Context, hc *http.Client, method, apiAddr, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+apiAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, nil
}

// admin sends an admin request to the running unpaused nodes in turn,
// retrying (bounded) while the cluster answers 409 (a membership change in
// flight), 503 (no leader yet) or nothing.
func (c *ProcCluster) admin(ctx context.Context, method, path string) (int, []byte, error) {
	var lastErr error = errors.New("no running node")
	for attempt := 0; attempt < 40; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, nil, fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
			case <-time.After(250 * time.Millisecond):
			}
		}
		var live []*Proc
		for _, p := range c.Running() {
			if !p.Paused() {
				live = append(live, p)
			}
		}
		if len(live) == 0 {
			continue
		}
		p := live[attempt%len(live)]
		if lead := c.Leader(); lead != nil && attempt%2 == 0 {
			p = lead
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		code, b, err := c.adminDo(actx, http.DefaultClient, method, p.APIAddr, path)
		cancel()
		switch {
		case err != nil:
			lastErr = err
		case code == http.StatusConflict || code == http.StatusServiceUnavailable:
			lastErr = fmt.Errorf("%s %s: %d %s", method, path, code, b)
		default:
			return code, b, nil
		}
	}
	return 0, nil, lastErr
}

// WaitReady waits until a leader exists and every running, unpaused node
// answers its status with the routing configuration applied.
func (c *ProcCluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := c.Leader() != nil
		for _, p := range c.Running() {
			st, fresh := p.Status()
			ready = ready && !p.Paused() && fresh && st.ConfigVersion > 0
		}
		if ready {
			return nil
		}
		if crashes := c.Crashes(); len(crashes) > 0 {
			// A node that died (at start: a port taken meanwhile) will
			// not become ready: say why now.
			return errors.New(strings.Join(crashes, "; "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process cluster: no leader with the routing configuration on every node within %v (node logs in %s)", timeout, c.cfg.Dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Crashes lists the processes that exited without being told to (a
// panic, a fatal error), each with the end of its log.
func (c *ProcCluster) Crashes() []string {
	var out []string
	for _, p := range c.Procs() {
		p.mu.Lock()
		done, err, stopping := p.done, p.exitErr, p.stopping
		p.mu.Unlock()
		if done == nil || stopping {
			continue
		}
		select {
		case <-done:
			b, _ := os.ReadFile(p.logPath)
			out = append(out, fmt.Sprintf("node process n%d exited on its own: %v: %s", p.Slot+1, err, tail(b, 600)))
		default:
		}
	}
	return out
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Close kills every process (reaping each, bounded), stops the links and
// the PSPs, and removes a temp dir it created. Safe to call twice.
func (c *ProcCluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if c.stopWatch != nil {
		c.stopWatch()
		c.watchWG.Wait()
	}
	for _, p := range c.Procs() {
		if err := c.Kill(p); err != nil {
			c.cfg.Logger.Warn("kill node process", zap.Int("slot", p.Slot+1), zap.Error(err))
		}
	}
	c.Net.Close()
	for _, s := range c.Sims {
		s.Close()
	}
	c.http.CloseIdleConnections()
	if c.tempDir {
		_ = os.RemoveAll(c.cfg.Dir)
	}
}

// joinNew starts a node on a fresh dir that joins through a running member
// and gets a new member id; it takes a new slot.
func (c *ProcCluster) joinNew(ctx context.Context) (*Proc, error) {
	via := c.Leader()
	if via == nil {
		return nil, errors.New("no leader to join through")
	}
	raft, err := freeAddr()
	if err != nil {
		return nil, err
	}
	api, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	slot := len(c.procs)
	c.mu.Unlock()
	name := "node" + strconv.Itoa(slot+1)
	dir := filepath.Join(c.cfg.Dir, name)
	args := append([]string{"node", "--data-dir", dir, "--raft-listen", raft, "--api-listen", api,
		"--join", via.APIAddr}, c.baseArgs...)
	p := &Proc{Slot: slot, APIAddr: api, dir: dir, args: args, logPath: filepath.Join(c.cfg.Dir, name+".log")}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	if err := c.start(p); err != nil {
		return nil, err
	}
	// The id comes from the join; the node serves its status once raft
	// runs.
	deadline := time.Now().Add(procReadyTimeout)
	for p.ID() == 0 {
		if !p.Running() {
			b, _ := os.ReadFile(p.logPath)
			return p, fmt.Errorf("joining node exited: %s", tail(b, 600))
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("joining node reported no member id within %v", procReadyTimeout)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p, nil
}

// freeAddr returns a loopback address with a free port outside the
// ephemeral range, for a child process to bind.
func freeAddr() (string, error) { return freeport.Addr() }

func randomToken(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
