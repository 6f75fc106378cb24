package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/txswitch/txswitch/consensus"
	tcptransport "github.com/txswitch/txswitch/consensus/transport/tcp"
	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/storage/pebblestore"
	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/api"
)

// The structural contract between consensus and storage, checked here
// because neither may import the other.
var (
	_ consensus.LogStore    = (*pebblestore.LogStore)(nil)
	_ consensus.ImageStager = (*pebblestore.LogStore)(nil)
)

// Snapshot images stream from and to Pebble in bounded memory (from cluster
// version txswitch.VersionStreamedImages on).
var _ consensus.ImageStreamer = (*txswitch.Machine)(nil)

// The machine syncs its Pebble state instead of copying it, so a node's own
// snapshots are metadata records and images are built only for followers.
var _ consensus.StateSyncer = (*txswitch.Machine)(nil)

// DefaultGroup is the raft group of the payment state machine. Keys and
// frames carry it so that several groups per node is configuration later.
const DefaultGroup = 1

// Config configures one node.
type Config struct {
	// DataDir holds the Pebble journal; FS is nil for the OS filesystem
	// (tests pass pebble's in-memory or crashable filesystems).
	DataDir string
	FS      vfs.FS
	Group   uint64

	// ID is this node's member id. A data dir is bound to its id: on
	// restart ID may be 0 (read from the dir) or must match.
	ID uint64
	// Bootstrap lists the initial members (with this node among them) of
	// a NEW cluster. It is used only on a fresh data dir; a fresh dir
	// without Bootstrap must Join.
	Bootstrap []consensus.Peer
	// Join is the API address (host:port) of a running member. A node with
	// a fresh (or wiped) data dir asks it for a NEW member id, so an old id
	// is never reused with an empty log.
	Join string

	// RaftListen and APIListen are listen addresses (":0" picks a port);
	// the advertised addresses default to the bound ones.
	RaftListen, APIListen       string
	RaftAdvertise, APIAdvertise string

	AdminToken      string
	ProviderSecrets map[string]string
	// APIMaxConns bounds the API's connections (0: api's default); past it
	// a new connection is answered 503 overloaded with Retry-After.
	APIMaxConns int
	// SeedConfig is proposed by the leader when the cluster has no routing
	// configuration yet (a new cluster); it never overwrites one.
	SeedConfig *txswitch.RoutingConfig

	// CentralDB is the PostgreSQL URL the leader exports to; empty runs
	// on the journal alone. ExportBacklogAlarm warns when that many events
	// wait for export (0: no alarm).
	CentralDB          string
	ExportBacklogAlarm uint64
	// Export tunes the exporter's timers (zero fields: central's defaults).
	Export ExportTuning

	TickInterval time.Duration
	// SnapshotEvery, SnapshotKeep and LagRetain are passed to consensus
	// (0: its defaults): a snapshot every SnapshotEvery applied entries,
	// SnapshotKeep entries kept behind it, and on the leader up to
	// LagRetain for members that are behind.
	SnapshotEvery, SnapshotKeep, LagRetain uint64
	// ResolveEvery is the in-doubt resolver's period (0: the default).
	ResolveEvery time.Duration
	Logger       *zap.Logger
	// Registry receives the node's metrics (nil: a new one, with the Go
	// runtime's and the process's).
	Registry *prometheus.Registry
	// Failpoint is the consensus test hook (nil in production).
	Failpoint func(name string)
	// Versions overrides the cluster versions this node claims to run
	// (zero: the binary's, txswitch.BinaryVersions); tests play a rolling
	// upgrade with it.
	Versions txswitch.VersionRange
}

// Node is one running txswitch node.
type Node struct {
	cfg       Config
	log       *zap.Logger
	db        *pebblestore.DB
	tr        *tcptransport.Transport
	raft      *consensus.Node
	machine   *txswitch.Machine
	versions  txswitch.VersionRange // the cluster versions this node runs
	svc       *txswitch.Svc
	providers *providers.Registry
	api       *api.Server
	apiLn     net.Listener
	registry  *prometheus.Registry
	central   *centralDB // nil without a central database

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Start opens the journal, joins or bootstraps the group and serves the API.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Group == 0 {
		cfg.Group = DefaultGroup
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	n := &Node{cfg: cfg, log: cfg.Logger, registry: cfg.Registry}
	defer func() {
		if err != nil {
			n.closeAll()
		}
	}()

	if n.db, err = pebblestore.Open(cfg.DataDir, pebblestore.Options{FS: cfg.FS, Logger: cfg.Logger.Named("pebble")}); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", cfg.DataDir, err)
	}
	// A node about to bootstrap on an empty data dir asks the other
	// bootstrap members whether its id ran before, and does so before it
	// listens for the API itself: members starting together then find
	// each other's port closed (a fresh member has nothing to tell) rather
	// than open and silent while each waits for its own answer, which
	// would stop them all.
	if fresh, err := n.freshBootstrap(); err != nil {
		return nil, err
	} else if fresh {
		if err := n.refuseIfRanBefore(); err != nil {
			return nil, err
		}
	}
	if n.apiLn, err = net.Listen("tcp", cfg.APIListen); err != nil {
		return nil, fmt.Errorf("listen for the API on %s: %w", cfg.APIListen, err)
	}
	if n.tr, err = tcptransport.New(tcptransport.Config{ID: cfg.ID, Group: cfg.Group, ListenAddr: cfg.RaftListen, Logger: cfg.Logger.Named("transport")}); err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", cfg.RaftListen, err)
	}
	if n.cfg.APIAdvertise == "" {
		n.cfg.APIAdvertise = n.apiLn.Addr().String()
	}
	if n.cfg.RaftAdvertise == "" {
		n.cfg.RaftAdvertise = n.tr.Addr().String()
	}

	id, join, err := n.identity()
	if err != nil {
		return nil, err
	}
	n.cfg.ID = id
	n.log = n.log.With(zap.Uint64("node", id))

	logStore := n.db.LogStore(cfg.Group)
	state := n.db.StateStore(cfg.Group)
	versions := n.binaryVersions()
	n.versions = versions
	if n.machine, err = txswitch.NewMachineFor(state, versions); err != nil {
		return nil, fmt.Errorf("load state machine: %w", err)
	}
	// The registry logs each breaker transition itself.
	n.providers = providers.NewRegistry(providers.RegistryOptions{Logger: n.log.Named("providers"), Registerer: n.registry})
	// The registry follows the replicated configuration: on every applied
	// change, and now for the configuration already in the journal.
	n.machine.OnConfig(func(rc txswitch.RoutingConfig) {
		if err := n.providers.Configure(rc.Providers); err != nil {
			n.log.Error("configure providers from the replicated config", zap.Uint64("version", rc.Version), zap.Error(err))
		}
	})
	if rc, ok := n.machine.Config(); ok {
		if err := n.providers.Configure(rc.Providers); err != nil {
			return nil, fmt.Errorf("configure providers: %w", err)
		}
	}

	peers := cfg.Bootstrap
	if join {
		// Peers only seed the transport of a joining node.
		if peers, err = clusterMembers(cfg.Join, cfg.AdminToken); err != nil {
			return nil, err
		}
	}
	n.raft, err = consensus.NewNode(consensus.Config{
		ID: id, Group: cfg.Group,
		LogStore: logStore, StateMachine: n.machine, Transport: n.tr,
		TickInterval: cfg.TickInterval, SnapshotEvery: cfg.SnapshotEvery, SnapshotKeep: cfg.SnapshotKeep, LagRetain: cfg.LagRetain,
		StreamImages: func() bool { return n.machine.ClusterVersion() >= txswitch.VersionStreamedImages },
		Peers:        peers, Join: join,
		Logger: n.log.Named("raft"), Failpoint: cfg.Failpoint,
	})
	if err != nil {
		return nil, fmt.Errorf("start raft node %d: %w", id, err)
	}
	n.tr.Start(n.raft)

	n.svc = txswitch.NewService(txswitch.ServiceConfig{
		Log: n.raft, Store: state, Machine: n.machine, Providers: n.providers,
		Logger: n.log.Named("switch"), ResolveEvery: cfg.ResolveEvery,
		NotifyURL: func(provider string) string {
			return "http://" + n.cfg.APIAdvertise + "/v1/notifications/" + provider
		},
	})
	n.registry.MustRegister(&nodeCollector{n: n})
	n.api = api.New(api.Options{
		Service: n.svc, Cluster: clusterInfo{n}, Admin: adminOps{n},
		AdminToken: cfg.AdminToken, ProviderSecrets: cfg.ProviderSecrets,
		NodeID: strconv.FormatUint(id, 10), Logger: n.log.Named("api"), Registry: n.registry,
		Concurrency: cfg.APIMaxConns,
	})
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if cfg.CentralDB != "" {
		if n.central, err = startCentral(ctx, n, cfg.CentralDB); err != nil {
			return nil, err
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.central.run(ctx)
		}()
	}
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		n.versionLoop(ctx)
	}()
	go func() {
		defer n.wg.Done()
		n.forgetBreakersOnStepDown(ctx)
	}()
	go func() {
		defer n.wg.Done()
		if err := n.api.Serve(n.apiLn); err != nil {
			n.log.Error("API server stopped", zap.Error(err))
		}
	}()
	go func() {
		defer n.wg.Done()
		n.svc.Run(ctx)
	}()
	if cfg.SeedConfig != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.seedConfig(ctx, *cfg.SeedConfig)
		}()
	}
	n.log.Info("node started", zap.String("api", n.cfg.APIAdvertise), zap.String("raft", n.cfg.RaftAdvertise),
		zap.Bool("joined", join), zap.String("data_dir", cfg.DataDir), zap.Bool("central_db", cfg.CentralDB != ""))
	return n, nil
}

// binaryVersions are the cluster versions this node runs: its binary's,
// or the ones a test configured.
func (n *Node) binaryVersions() txswitch.VersionRange {
	if n.cfg.Versions != (txswitch.VersionRange{}) {
		return n.cfg.Versions
	}
	return txswitch.BinaryVersions
}

// identity decides this node's member id: the one bound to the data dir,
// the bootstrap one for a new cluster, or a new one from the cluster.
func (n *Node) identity() (id uint64, join bool, err error) {
	bound, ok, err := n.db.NodeID()
	if err != nil {
		return 0, false, fmt.Errorf("read node identity: %w", err)
	}
	switch {
	case ok:
		if n.cfg.ID != 0 && n.cfg.ID != bound {
			return 0, false, fmt.Errorf("data dir %s belongs to node %d, not %d", n.cfg.DataDir, bound, n.cfg.ID)
		}
		// Restart: the journal knows the group; Join only decides whether
		// raft bootstraps, and a non-empty log never does.
		return bound, n.cfg.Join != "", nil
	case n.cfg.Join != "":
		id, err = joinCluster(n.cfg.Join, n.cfg.AdminToken, n.cfg.RaftAdvertise, n.cfg.APIAdvertise, n.binaryVersions())
		if err != nil {
			return 0, false, err
		}
		join = true
	case len(n.cfg.Bootstrap) > 0:
		if n.cfg.ID == 0 {
			return 0, false, errors.New("bootstrapping a new cluster needs this node's id")
		}
		found := false
		for _, p := range n.cfg.Bootstrap {
			found = found || p.ID == n.cfg.ID
		}
		if !found {
			return 0, false, fmt.Errorf("node %d is not among the bootstrap members", n.cfg.ID)
		}
		id = n.cfg.ID // Start asked the others whether it ran before (refuseIfRanBefore)
	default:
		return 0, false, fmt.Errorf("data dir %s has no node identity: bootstrap a new cluster or join a running one (a wiped node rejoins as a new member)", n.cfg.DataDir)
	}
	if err := n.db.SetNodeID(id); err != nil {
		return 0, false, fmt.Errorf("bind node id %d to %s: %w", id, n.cfg.DataDir, err)
	}
	return id, join, nil
}

// freshBootstrap reports whether this node is about to bootstrap a new
// cluster on an empty data dir (no identity bound to it, no --join).
func (n *Node) freshBootstrap() (bool, error) {
	_, bound, err := n.db.NodeID()
	if err != nil {
		return false, fmt.Errorf("read node identity: %w", err)
	}
	return !bound && n.cfg.Join == "" && len(n.cfg.Bootstrap) > 0 && n.cfg.ID != 0, nil
}

// ranBeforeTimeout bounds asking one bootstrap member whether this node's
// id has run before; ranBeforeAttempts how often a member that accepted
// the connection but did not answer in time is asked again.
const (
	ranBeforeTimeout  = 2 * time.Second
	ranBeforeAttempts = 3
)

// refuseIfRanBefore keeps a node whose data dir is empty from bootstrapping
// under an id that has already run in the cluster, as a wiped node
// restarted with its usual command would: with an empty log and no memory
// of its vote it could vote twice in a term or elect a leader that lacks
// entries it had acknowledged, and they would be lost. A member knows the
// id ran if it applied the id's version report (replicated, sent at start)
// or, as the leader, has seen the id acknowledge entries (the report may
// not have landed before the node died). Members whose API port is closed
// (not running, or fresh and asking the same question) or that cannot be
// reached are skipped: a new cluster whose members start together or one
// by one still bootstraps. A member that does not answer in time or
// answers with an error (it is starting, overloaded) is asked again, and
// then stops the start, since skipping it could let the wiped node in.
// Left open: a wiped node started while every member that knows it is
// down as well.
func (n *Node) refuseIfRanBefore() error {
	for _, p := range n.cfg.Bootstrap {
		if p.ID == n.cfg.ID || p.APIAddr == "" {
			continue
		}
		st, err := memberStatus(p.APIAddr, n.cfg.AdminToken, ranBeforeTimeout)
		for attempt := 1; attempt < ranBeforeAttempts && err != nil && !unreachable(err) && !refusedToSay(err); attempt++ {
			time.Sleep(ranBeforeTimeout / 4)
			st, err = memberStatus(p.APIAddr, n.cfg.AdminToken, ranBeforeTimeout)
		}
		switch {
		case refusedToSay(err):
			// Another admin token (or none): the check cannot protect
			// this bootstrap.
			n.log.Warn("bootstrap: a running member would not say whether this id ran before; start nodes with the cluster's --admin-token so a wiped node cannot come back under its old id",
				zap.Uint64("member", p.ID), zap.Error(err))
			continue
		case err != nil && unreachable(err):
			n.log.Info("bootstrap: member not reachable, cannot ask whether this id ran before", zap.Uint64("member", p.ID), zap.Error(err))
			continue
		case err != nil:
			return fmt.Errorf("bootstrap: ask member %d at %s whether node %d ran before: %w (start again once it answers)", p.ID, p.APIAddr, n.cfg.ID, err)
		}
		_, reported := st.Versions.Members[n.cfg.ID]
		if reported || st.Raft.Progress[n.cfg.ID].Match > 0 {
			return fmt.Errorf("node %d ran in this cluster before (member %d at %s knows it), but its data dir %s is empty: "+
				"a wiped node must not come back under its old id; remove member %d and start this node with --join %s, it gets a new id",
				n.cfg.ID, p.ID, p.APIAddr, n.cfg.DataDir, n.cfg.ID, p.APIAddr)
		}
	}
	return nil
}

// seedConfig proposes the seed routing configuration once a leader exists,
// if the cluster has none. Only the leader proposes, so restarts never
// overwrite what operators changed.
func (n *Node) seedConfig(ctx context.Context, cfg txswitch.RoutingConfig) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if n.raft.Leadership().IsLeader {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.svc.EnsureConfig(cctx, cfg)
			cancel()
			if err == nil {
				return
			}
			n.log.Warn("seed routing config", zap.Error(err))
		} else if _, ok := n.machine.Config(); ok {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// forgetBreakersOnStepDown drops the provider breakers each time this node
// stops leading. Only the leader routes payments: a deposed leader's
// breakers stayed in the state they had (open for a provider the new
// leader routes through again), and its status and metrics reported them
// as current. Its breakers restart closed should it lead again, as a new
// leader's do.
func (n *Node) forgetBreakersOnStepDown(ctx context.Context) {
	var led txswitch.Leadership
	for {
		ld, changed := n.raft.LeadershipWatch()
		// Leading in a new term means it stopped leading in between, even
		// when this loop woke too late to see it.
		if led.IsLeader && (!ld.IsLeader || ld.Term != led.Term) {
			forgotten := n.providers.ForgetBreakers()
			n.log.Info("stopped leading: provider breakers forgotten (the leader's are current)",
				zap.Uint64("led_term", led.Term), zap.Int("breakers", forgotten))
		}
		led = ld
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// ID is the node's member id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// APIAddr is the advertised API address (host:port).
func (n *Node) APIAddr() string { return n.cfg.APIAdvertise }

// RaftAddr is the advertised raft address (host:port).
func (n *Node) RaftAddr() string { return n.cfg.RaftAdvertise }

// Raft is the consensus node.
func (n *Node) Raft() *consensus.Node { return n.raft }

// Service is the payment service.
func (n *Node) Service() *txswitch.Svc { return n.svc }

// Providers is the provider registry (breakers).
func (n *Node) Providers() *providers.Registry { return n.providers }

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// HandOffTimeout bounds how long Shutdown waits for a successor to take
// leadership before it stops anyway (the cluster then elects one).
const HandOffTimeout = 3 * time.Second

// Shutdown is the stop of a release: a leader first hands leadership to
// its most caught-up active follower, so the cluster does not sit through
// an election timeout with no leader (writes refused) and the calls in
// flight here record their results through the successor; then Stop. It
// returns the successor's id (0: this node did not lead, or no follower
// could take over in time; the cluster then elects one as after a crash).
func (n *Node) Shutdown() (uint64, error) {
	to := n.handOff()
	return to, n.Stop()
}

func (n *Node) handOff() uint64 {
	if n.raft == nil || !n.raft.Leadership().IsLeader {
		return 0
	}
	st := n.raft.Status()
	var to, match uint64
	for id, pr := range st.Progress {
		if id == st.ID || pr.Learner || !pr.RecentActive {
			continue
		}
		if to == 0 || pr.Match > match || (pr.Match == match && id < to) {
			to, match = id, pr.Match
		}
	}
	if to == 0 {
		n.log.Warn("stopping the leader with no active follower to hand leadership to")
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), HandOffTimeout)
	defer cancel()
	if err := n.raft.TransferLeadership(ctx, to); err != nil {
		n.log.Warn("leadership hand-off before stopping failed; the cluster elects a leader", zap.Uint64("to", to), zap.Error(err))
		return 0
	}
	n.log.Info("handed leadership off before stopping", zap.Uint64("to", to))
	return to
}

// Stop stops the node: the API stops taking requests (those in flight
// get up to 5 s), then the service loops, raft, the transport and the
// journal close. A leader stopped this way leaves the cluster to elect a
// successor; Shutdown hands leadership off first.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		n.drainAPI()
		n.stopErr = n.closeAll()
		n.log.Info("node stopped")
	})
	return n.stopErr
}

// drainAPI stops the API taking requests and gives those in flight up to
// 5 s to finish.
func (n *Node) drainAPI() {
	if n.api == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.api.Shutdown(ctx); err != nil {
		n.log.Warn("API shutdown", zap.Error(err))
	}
}

// Crash stops the node the way a crash looks to the rest of the cluster,
// as far as a process can do that to itself: raft and the transport stop
// first, so the others stop hearing from it at once and a leader stops
// leading; only then does the API drain (handlers in flight fail on the
// stopped raft, or finish a provider call whose result the next leader's
// resolver settles) and the journal close. Stop drains first, so a leader
// stopped that way goes on leading, and every write of the cluster waits,
// for as long as its drain takes: up to 5 s under load.
func (n *Node) Crash() error {
	n.stopOnce.Do(func() {
		n.stopRaft()
		n.drainAPI()
		n.stopErr = n.closeAll() // what is left: the journal, the loops' ends
		n.log.Info("node crashed (raft stopped before the API drain)")
	})
	return n.stopErr
}

// stopRaft ends the service loops' context, raft and the transport: from
// here on the others hear nothing from this node. Each step is idempotent.
func (n *Node) stopRaft() {
	if n.cancel != nil {
		n.cancel()
	}
	if n.raft != nil {
		n.raft.Stop()
	}
	if n.tr != nil {
		_ = n.tr.Close()
	}
}

func (n *Node) closeAll() error {
	n.stopRaft()
	if n.apiLn != nil {
		_ = n.apiLn.Close()
	}
	n.wg.Wait()
	if n.central != nil {
		n.central.close()
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			return fmt.Errorf("close journal: %w", err)
		}
	}
	return nil
}

// clusterInfo adapts the raft node to what the API needs.
type clusterInfo struct{ n *Node }

func (c clusterInfo) Leadership() txswitch.Leadership { return c.n.raft.Leadership() }
func (c clusterInfo) LeaderAPIAddr() (string, bool)   { return c.n.raft.LeaderAPIAddr() }
func (c clusterInfo) LeadershipWatch() (txswitch.Leadership, <-chan struct{}) {
	return c.n.raft.LeadershipWatch()
}
func (c clusterInfo) Removed() bool { return c.n.raft.Removed() }
func (c clusterInfo) Ready() error {
	if err := c.n.raft.Err(); err != nil {
		return fmt.Errorf("raft node stopped: %w", err)
	}
	// Raft keeps a removed node a follower of the leader it last knew.
	if c.n.raft.Removed() {
		return txswitch.ErrRemoved
	}
	if c.n.raft.Leadership().LeaderID == 0 {
		return txswitch.ErrNoLeader
	}
	return nil
}
