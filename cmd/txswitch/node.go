package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/consensus"
)

func init() {
	register("node", "run a cluster node (journal, raft, payment API)", runNode)
}

// nodeFile is the YAML configuration file of a node; flags override it.
type nodeFile struct {
	ID            uint64            `yaml:"id"`
	DataDir       string            `yaml:"data_dir"`
	RaftListen    string            `yaml:"raft_listen"`
	APIListen     string            `yaml:"api_listen"`
	RaftAdvertise string            `yaml:"raft_advertise"`
	APIAdvertise  string            `yaml:"api_advertise"`
	Peers         []filePeer        `yaml:"peers"`
	Join          string            `yaml:"join"`
	AdminToken    string            `yaml:"admin_token"`
	RoutingConfig string            `yaml:"routing_config"`
	Secrets       map[string]string `yaml:"provider_secrets"`
	CentralDB     string            `yaml:"central_db"`
	LogLevel      string            `yaml:"log_level"`
	TickInterval  time.Duration     `yaml:"tick_interval"`
	APIMaxConns   int               `yaml:"api_max_conns"`
}

// filePeer is a member in the configuration file.
type filePeer struct {
	ID       uint64 `yaml:"id"`
	RaftAddr string `yaml:"raft_addr"`
	APIAddr  string `yaml:"api_addr"`
}

// peerList is the repeatable --peer id,raft_addr,api_addr flag.
type peerList []consensus.Peer

func (p *peerList) String() string { return fmt.Sprint(*p) }
func (p *peerList) Set(s string) error {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return errors.New("want id,raft_addr,api_addr")
	}
	id, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("bad member id %q", f[0])
	}
	*p = append(*p, consensus.Peer{ID: id, RaftAddr: f[1], APIAddr: f[2]})
	return nil
}

// secretList is the repeatable --provider-secret name=secret flag.
type secretList map[string]string

func (s secretList) String() string { return fmt.Sprintf("%d secrets", len(s)) }
func (s secretList) Set(v string) error {
	name, secret, ok := strings.Cut(v, "=")
	if !ok || name == "" || secret == "" {
		return errors.New("want provider=secret")
	}
	s[name] = secret
	return nil
}

// nodeFlags defines the node's flags on fs, into f, peers and secrets, and
// returns the --config path.
func nodeFlags(fs *flag.FlagSet, f *nodeFile, peers *peerList, secrets secretList) *string {
	configPath := fs.String("config", "", "YAML configuration file (flags override it)")
	fs.Uint64Var(&f.ID, "id", 0, "member id (bootstrap only; a data dir remembers its id)")
	fs.StringVar(&f.DataDir, "data-dir", "", "journal directory (required)")
	fs.StringVar(&f.RaftListen, "raft-listen", "127.0.0.1:7100", "raft transport listen address")
	fs.StringVar(&f.APIListen, "api-listen", "127.0.0.1:8100", "HTTP API listen address")
	fs.StringVar(&f.RaftAdvertise, "raft-advertise", "", "raft address other members dial (default: the bound one)")
	fs.StringVar(&f.APIAdvertise, "api-advertise", "", "API address other members forward to (default: the bound one)")
	fs.Var(peers, "peer", "initial member id,raft_addr,api_addr of a NEW cluster (repeat for each, this node included)")
	fs.StringVar(&f.Join, "join", "", "API address of a running member to join through (a fresh or wiped node gets a new id)")
	fs.StringVar(&f.AdminToken, "admin-token", os.Getenv("TXSWITCH_ADMIN_TOKEN"), "admin API bearer token (env TXSWITCH_ADMIN_TOKEN)")
	fs.StringVar(&f.RoutingConfig, "routing-config", "", "JSON routing configuration proposed when the cluster has none")
	fs.Var(secrets, "provider-secret", "provider=secret for notification signatures (repeatable)")
	fs.StringVar(&f.CentralDB, "central-db", os.Getenv("TXSWITCH_CENTRAL_DB"), "PostgreSQL URL the leader exports to (env TXSWITCH_CENTRAL_DB); empty: the embedded journal alone")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&f.TickInterval, "tick", 0, "raft tick interval (default 100ms)")
	fs.IntVar(&f.APIMaxConns, "api-max-conns", 0, "API connections served at once; past it a new one is answered 503 overloaded with Retry-After (default 10000)")
	return configPath
}

func runNode(args []string) error {
	fs := newFlags("node", "[--config FILE] [flags]")
	var f nodeFile
	var peers peerList
	secrets := secretList{}
	configPath := nodeFlags(fs, &f, &peers, secrets)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *configPath != "" {
		if err := mergeNodeFile(*configPath, fs, &f); err != nil {
			return err
		}
	}
	if len(peers) == 0 {
		for _, p := range f.Peers {
			peers = append(peers, consensus.Peer{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr})
		}
	}
	if f.Secrets == nil {
		f.Secrets = map[string]string{}
	}
	for k, v := range secrets {
		f.Secrets[k] = v
	}
	if f.DataDir == "" {
		fs.Usage()
		return fmt.Errorf("--data-dir is required: %w", errUsage)
	}
	log, err := newLogger(f.LogLevel, false)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	cfg := cluster.Config{
		DataDir: f.DataDir, ID: f.ID, Bootstrap: peers, Join: f.Join,
		RaftListen: f.RaftListen, APIListen: f.APIListen,
		RaftAdvertise: f.RaftAdvertise, APIAdvertise: f.APIAdvertise,
		AdminToken: f.AdminToken, ProviderSecrets: f.Secrets,
		TickInterval: f.TickInterval, Logger: log, APIMaxConns: f.APIMaxConns,
		CentralDB: f.CentralDB, ExportBacklogAlarm: 1_000_000,
	}
	if f.RoutingConfig != "" {
		// Read and checked as `txswitch config check` does.
		b, err := readConfigFile(f.RoutingConfig)
		if err != nil {
			return err
		}
		rc, err := decodeConfig(b, f.RoutingConfig)
		if err != nil {
			return err
		}
		// Only the first start of a cluster stores the seed, and a node
		// that refused to start over it would stall a rolling release:
		// say it, and let `config check` and PUT refuse it.
		if e := rc.CheckAmountCurrencies(); e != nil {
			log.Warn("routing configuration: an amount in minor units over several currencies (a limit or a fixed fee); `txswitch config check` and PUT /v1/admin/config refuse it",
				zap.String("file", f.RoutingConfig), zap.String("field", e.Field), zap.String("problem", e.Message))
		}
		cfg.SeedConfig = &rc
	}
	if f.CentralDB == "" {
		log.Info("no central database configured: running on the embedded journal alone (the outbox keeps every event for a database added later)")
	} else {
		log.Info("central database configured: the leader exports the outbox to it; payments never wait for it")
	}
	n, err := cluster.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("txswitch node %d: API http://%s, raft %s\n", n.ID(), n.APIAddr(), n.RaftAddr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("signal received, stopping", zap.String("signal", s.String()))
	case <-n.Raft().Done():
		log.Error("raft node stopped", zap.Error(n.Raft().Err()))
		return n.Stop()
	}
	_, err = n.Shutdown()
	return err
}

// mergeNodeFile loads the YAML file into f for every field no flag set.
func mergeNodeFile(path string, fs *flag.FlagSet, f *nodeFile) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var file nodeFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	pick := func(name string, dst *string, v string) {
		if !set[name] && v != "" {
			*dst = v
		}
	}
	pick("data-dir", &f.DataDir, file.DataDir)
	pick("raft-listen", &f.RaftListen, file.RaftListen)
	pick("api-listen", &f.APIListen, file.APIListen)
	pick("raft-advertise", &f.RaftAdvertise, file.RaftAdvertise)
	pick("api-advertise", &f.APIAdvertise, file.APIAdvertise)
	pick("join", &f.Join, file.Join)
	pick("admin-token", &f.AdminToken, file.AdminToken)
	pick("routing-config", &f.RoutingConfig, file.RoutingConfig)
	pick("log-level", &f.LogLevel, file.LogLevel)
	pick("central-db", &f.CentralDB, file.CentralDB)
	if !set["id"] && file.ID != 0 {
		f.ID = file.ID
	}
	if !set["tick"] && file.TickInterval != 0 {
		f.TickInterval = file.TickInterval
	}
	if !set["api-max-conns"] && file.APIMaxConns != 0 {
		f.APIMaxConns = file.APIMaxConns
	}
	f.Peers = file.Peers
	f.Secrets = file.Secrets
	return nil
}
