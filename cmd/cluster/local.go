package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/txswitch/txswitch/consensus"
	"github.com/txswitch/txswitch/internal/freeport"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// LocalConfig configures a cluster of nodes and simulated PSPs in this
// process, on loopback, with real data directories (fsync on).
type LocalConfig struct {
	Nodes int // default 3
	// Dir holds one data dir per node (default: a new temp dir).
	Dir string
	// BasePort, when set, gives fixed ports: node i's API on BasePort+i,
	// its raft transport on BasePort+100+i, PSP j on BasePort+200+j.
	// 0 picks free ports.
	BasePort int
	// Providers are the simulated PSPs' names (default psp_a, psp_b, psp_c,
	// which the default routing configuration uses).
	Providers []string
	// APIKey and AdminToken default to random ones.
	APIKey, AdminToken string
	MerchantID         string // default mer_demo
	// CentralDB is a PostgreSQL URL every node exports to (empty: none).
	CentralDB string
	// Export tunes every node's exporter (zero: the shipped defaults).
	Export ExportTuning
	// FS, when set, gives slot i's filesystem (0-based) each time the slot
	// starts or restarts (nil: the OS filesystem). Chaos uses it to put a
	// switchable fault injector under one node's Pebble, and to restart a
	// node on what its disk held at a crash.
	FS           func(slot int) vfs.FS
	Seed         uint64
	TickInterval time.Duration
	ResolveEvery time.Duration
	// SnapshotEvery, SnapshotKeep and LagRetain tune every node's
	// snapshots and log compaction (0: the defaults); tests make them small
	// to force catch-up by snapshot.
	SnapshotEvery, SnapshotKeep, LagRetain uint64
	Logger                                 *zap.Logger
}

// Local is a running local cluster.
type Local struct {
	cfg     LocalConfig
	mu      sync.Mutex
	nodes   []*Node // nil while stopped
	configs []Config
	Sims    map[string]*sim.Server
	// APIKey is the demo merchant's key; AdminToken the admin API's.
	APIKey, AdminToken, MerchantID string
	tempDir                        bool
}

// StartLocal starts the PSPs and the nodes and waits for a leader and the
// seeded routing configuration.
func StartLocal(cfg LocalConfig) (_ *Local, err error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if len(cfg.Providers) == 0 {
		cfg.Providers = txswitch.DefaultProviderNames()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MerchantID == "" {
		cfg.MerchantID = "mer_demo"
	}
	l := &Local{cfg: cfg, Sims: map[string]*sim.Server{}, MerchantID: cfg.MerchantID,
		APIKey: orRandom(cfg.APIKey, "sk_demo_"), AdminToken: orRandom(cfg.AdminToken, "adm_")}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "txswitch-local-"); err != nil {
			return nil, err
		}
		l.tempDir = true
		l.cfg.Dir = cfg.Dir
	}

	secrets := map[string]string{}
	urls := map[string]string{}
	for j, name := range cfg.Providers {
		secret := orRandom("", "whsec_")
		s := sim.New(sim.Config{Name: name, Seed: cfg.Seed + uint64(j) + 1, NotifySecret: secret, Logger: cfg.Logger.Named(name)})
		addr, err := s.Start(l.addr(200 + j))
		if err != nil {
			return nil, fmt.Errorf("start simulated PSP %s: %w", name, err)
		}
		l.Sims[name] = s
		secrets[name] = secret
		urls[name] = "http://" + addr
	}
	seed := txswitch.DefaultConfig([]txswitch.MerchantConfig{{
		ID: cfg.MerchantID, Name: "Demo Shop", APIKeyHashes: []string{txswitch.HashAPIKey(l.APIKey)},
	}}, urls)

	peers := make([]consensus.Peer, cfg.Nodes)
	for i := range peers {
		peers[i] = consensus.Peer{ID: uint64(i + 1), RaftAddr: l.addr(100 + i), APIAddr: l.addr(i)}
		if cfg.BasePort == 0 {
			if peers[i].RaftAddr, err = freeAddr(); err != nil {
				return nil, err
			}
			if peers[i].APIAddr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
	}
	for i, p := range peers {
		l.configs = append(l.configs, Config{
			DataDir: filepath.Join(cfg.Dir, "node"+strconv.Itoa(i+1)),
			ID:      p.ID, Bootstrap: peers,
			RaftListen: p.RaftAddr, APIListen: p.APIAddr,
			AdminToken: l.AdminToken, ProviderSecrets: secrets, SeedConfig: &seed,
			TickInterval: cfg.TickInterval, ResolveEvery: cfg.ResolveEvery,
			SnapshotEvery: cfg.SnapshotEvery, SnapshotKeep: cfg.SnapshotKeep, LagRetain: cfg.LagRetain,
			CentralDB: cfg.CentralDB, ExportBacklogAlarm: 1_000_000, Export: cfg.Export,
			Logger: cfg.Logger.Named("node" + strconv.Itoa(i+1)),
		})
	}
	// All at once, as operators and process supervisors start a new
	// cluster: the bootstrap must not depend on the order.
	l.nodes = make([]*Node, cfg.Nodes)
	errs := make([]error, cfg.Nodes)
	var wg sync.WaitGroup
	for i := range l.configs {
		wg.Go(func() {
			if l.nodes[i], errs[i] = l.start(i); errs[i] != nil {
				errs[i] = fmt.Errorf("start node %d: %w", i+1, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := l.WaitReady(30 * time.Second); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Local) addr(offset int) string {
	if l.cfg.BasePort == 0 {
		return "127.0.0.1:0"
	}
	return "127.0.0.1:" + strconv.Itoa(l.cfg.BasePort+offset)
}

// WaitReady waits until a leader exists and every running node has applied
// the routing configuration.
func (l *Local) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l.Leader() != nil && l.allConfigured() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("local cluster: no leader with an applied routing configuration in time")
}

func (l *Local) allConfigured() bool {
	for _, n := range l.Nodes() {
		if _, ok := n.machine.Config(); !ok {
			return false
		}
	}
	return true
}

// Nodes returns the running nodes.
func (l *Local) Nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*Node
	for _, n := range l.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Node returns node i (0-based), nil while stopped.
func (l *Local) Node(i int) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[i]
}

// Size is the number of node slots.
func (l *Local) Size() int { return len(l.configs) }

// Leader returns the running node that leads, if any.
func (l *Local) Leader() *Node {
	for _, n := range l.Nodes() {
		if n.raft.Leadership().IsLeader {
			return n
		}
	}
	return nil
}

// LeaderIndex returns the leader's slot, or -1.
func (l *Local) LeaderIndex() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, n := range l.nodes {
		if n != nil && n.raft.Leadership().IsLeader {
			return i
		}
	}
	return -1
}

// take empties slot i and returns the node it held (nil: none running).
func (l *Local) take(i int) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.nodes[i]
	l.nodes[i] = nil
	return n
}

// StopNode stops node i (its data dir is kept).
func (l *Local) StopNode(i int) error {
	if n := l.take(i); n != nil {
		return n.Stop()
	}
	return nil
}

// CrashNode stops node i as a crash would (Node.Crash: raft stops before
// the API drains); its data dir is kept.
func (l *Local) CrashNode(i int) error {
	if n := l.take(i); n != nil {
		return n.Crash()
	}
	return nil
}

// ShutdownNode stops node i as a release does (Node.Shutdown: a leader
// hands leadership off first) and returns the successor's id, or 0.
func (l *Local) ShutdownNode(i int) (uint64, error) {
	if n := l.take(i); n != nil {
		return n.Shutdown()
	}
	return 0, nil
}

// SetNodeVersions sets the cluster versions slot i claims from its next
// start on: a test's way to restart a node on a newer (or older) binary.
func (l *Local) SetNodeVersions(i int, r txswitch.VersionRange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.configs[i].Versions = r
}

// RestartNode starts node i again on its data dir and addresses.
func (l *Local) RestartNode(i int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nodes[i] != nil {
		return fmt.Errorf("node %d is running", i+1)
	}
	n, err := l.start(i)
	if err != nil {
		return err
	}
	l.nodes[i] = n
	return nil
}

// start starts slot i on the filesystem LocalConfig.FS gives it now.
func (l *Local) start(i int) (*Node, error) {
	cfg := l.configs[i]
	if l.cfg.FS != nil {
		cfg.FS = l.cfg.FS(i)
	}
	return Start(cfg)
}

// APIAddrs lists every slot's API address.
func (l *Local) APIAddrs() []string {
	out := make([]string, len(l.configs))
	for i, c := range l.configs {
		out[i] = c.APIListen
	}
	return out
}

// Dir is the directory holding the data dirs.
func (l *Local) Dir() string { return l.cfg.Dir }

// Close stops every node and PSP, and removes a temp dir it created.
func (l *Local) Close() {
	for i := range l.configs {
		if err := l.StopNode(i); err != nil {
			l.cfg.Logger.Warn("stop node", zap.Int("node", i+1), zap.Error(err))
		}
	}
	for _, s := range l.Sims {
		s.Close()
	}
	if l.tempDir {
		_ = os.RemoveAll(l.cfg.Dir)
	}
}

func orRandom(v, prefix string) string {
	if v != "" {
		return v
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// freeAddr returns a loopback address with a free port outside the
// ephemeral range. Bootstrap needs every member's address before any node
// starts.
func freeAddr() (string, error) { return freeport.Addr() }
