package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

func init() {
	register("demo", "start a local cluster with simulated PSPs and live traffic", runDemo)
}

func runDemo(args []string) error {
	fs := newFlags("demo", "[--nodes N] [--base-port P] [--data-dir DIR] [--rate R] [--central-db auto|off|URL]")
	nodes := fs.Int("nodes", 3, "number of nodes")
	basePort := fs.Int("base-port", 7000, "node n's API listens on base+n-1 (node 1 on base), its raft on base+100+n-1, PSP j on base+200+j-1 (0: any free ports)")
	dataDir := fs.String("data-dir", "", "where the nodes keep their journals (default: a fresh temp dir, removed at exit)")
	rate := fs.Float64("rate", 5, "generated orders per second (0: no generated traffic)")
	every := fs.Duration("summary-every", 5*time.Second, "how often to print the live summary")
	logLevel := fs.String("log-level", "warn", "log level of the nodes (logs go to <data-dir>/demo.log)")
	centralDB := fs.String("central-db", centralAuto, "PostgreSQL the leader exports to: auto (a private server in the data dir when PostgreSQL is installed), off, or a postgres:// URL")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 9 {
		return fmt.Errorf("--nodes must be 1..9: %w", errUsage)
	}
	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "txswitch-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "demo.log")
	log, err := newFileLogger(*logLevel, logPath)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	central, err := startDemoCentral(*centralDB, dir, *basePort)
	if err != nil {
		return err
	}
	defer central.close() // after the nodes have stopped exporting

	apiKey, err := demoAPIKey(dir)
	if err != nil {
		return err
	}
	fmt.Printf("Starting %d txswitch nodes and 3 simulated PSPs (journals in %s, logs in %s)...\n", *nodes, dir, logPath)
	l, err := cluster.StartLocal(cluster.LocalConfig{Nodes: *nodes, Dir: dir, BasePort: *basePort, Logger: log, CentralDB: central.url, APIKey: apiKey})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := demoBehaviours(l); err != nil {
		return err
	}
	printDemoIntro(l)
	central.printIntro()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	central.toggleOnSignal(ctx)
	gen := newTrafficGen(l.APIAddrs(), l.APIKey, *rate)
	if *rate > 0 {
		go gen.run(ctx)
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	last := gen.snapshot()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nStopping: draining the traffic generator, the nodes and the PSPs...")
			gen.wait()
			return nil
		case now := <-t.C:
			cur := gen.snapshot()
			fmt.Println(summaryLine(l, cur, last, now.Sub(lastAt)))
			last, lastAt = cur, now
		}
	}
}

// demoBehaviours gives the three PSPs different characters, so the
// timelines and breakers have something to show.
func demoBehaviours(l *cluster.Local) error {
	redirect := &sim.Async{CompleteAfterMillis: 1500, NotifyDelayMillis: 200, Duplicates: 1}
	b := map[string]sim.Behaviour{
		// psp_a: fast and reliable.
		"psp_a": {Methods: map[string]sim.MethodBehaviour{
			sim.AnyMethod: {Latency: sim.Latency{MinMillis: 20, MaxMillis: 60}},
		}},
		// psp_b: slower, 3% refusals before processing (failover to the
		// next provider), redirect methods complete asynchronously.
		"psp_b": {Methods: map[string]sim.MethodBehaviour{
			sim.AnyMethod: {Latency: sim.Latency{MeanMillis: 120, StdDevMillis: 40}, ErrorRate: 0.03},
			"ideal":       {Latency: sim.Latency{MinMillis: 50, MaxMillis: 150}, Async: redirect},
			"sepa_debit":  {Latency: sim.Latency{MinMillis: 50, MaxMillis: 150}},
		}},
		// psp_c: redirect methods, and now and then it charges and then
		// does not answer in time: those payments go in doubt and the
		// resolver settles them by status inquiry.
		"psp_c": {Methods: map[string]sim.MethodBehaviour{
			sim.AnyMethod: {Latency: sim.Latency{MinMillis: 40, MaxMillis: 120}, Async: redirect, ChargeThenTimeoutRate: 0.01, StallMillis: 3000},
		}},
	}
	for name, beh := range b {
		s, ok := l.Sims[name]
		if !ok {
			continue
		}
		if err := s.SetBehaviour(beh); err != nil {
			return fmt.Errorf("set %s behaviour: %w", name, err)
		}
	}
	return nil
}

func printDemoIntro(l *cluster.Local) {
	addrs := l.APIAddrs()
	fmt.Println("\nCluster is up.")
	for i, a := range addrs {
		fmt.Printf("  node %d  API http://%s\n", i+1, a)
	}
	var names []string
	for n := range l.Sims {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("  PSP %-6s http://%s  (ledger: /ledger, faults: /control/behaviour)\n", n, strings.TrimPrefix(l.Sims[n].URL(), "http://"))
	}
	a := addrs[0]
	fmt.Printf("\nDemo merchant API key: %s\nAdmin token:           %s\n", l.APIKey, l.AdminToken)
	fmt.Printf(`
Try it (any node accepts any request; followers forward writes to the leader):

  # 1. create an order for a Dutch shopper (the order id goes into $ORDER)
  ORDER=$(curl -s -X POST http://%[1]s/v1/orders -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' \
    -H "Idempotency-Key: demo-order-$RANDOM" \
    -d '{"reference":"shop-1","amount":{"value":4998,"currency":"EUR"},"customer":{"country":"NL"},"channel":"online"}' \
    | grep -o 'ord_[A-Za-z0-9]*' | head -1); echo $ORDER

  # 2. pay it by card
  curl -s -X POST http://%[1]s/v1/orders/$ORDER/payments -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' \
    -H "Idempotency-Key: demo-pay-$RANDOM" -d '{"method":"card"}'

  # 3. read what happened, step by step
  curl -s http://%[1]s/v1/orders/$ORDER/timeline -H 'Authorization: Bearer %[2]s'

More: GET /v1/orders/$ORDER/methods (what this shopper may use), /explain (why it is or is not paid),
'txswitch status --addr %[1]s --admin-token %[3]s' (the cluster), http://%[1]s/metrics
(Prometheus: provider calls by result, breakers, payments in doubt; docs/operations.md), and take a PSP down with
  curl -s -X POST http://%[4]s/control/behaviour -H 'Content-Type: application/json' -d '{"outage":{"mode":"unavailable","for_ms":30000}}'
Ctrl-C stops everything.

`, a, l.APIKey, l.AdminToken, strings.TrimPrefix(l.Sims["psp_a"].URL(), "http://"))
}

func summaryLine(l *cluster.Local, cur, last trafficStats, d time.Duration) string {
	secs := d.Seconds()
	paid := cur.approved - last.approved
	decided := paid + (cur.declined - last.declined) + (cur.failed - last.failed)
	rate := "-"
	if decided > 0 {
		rate = fmt.Sprintf("%.0f%%", 100*float64(paid)/float64(decided))
	}
	leader := "none"
	breakers := "?"
	export := "export ?"
	if n := l.Leader(); n != nil {
		leader = fmt.Sprintf("node %d", n.ID())
		breakers = breakerSummary(n.Providers().States())
		export = exportSummary(n)
	}
	return fmt.Sprintf("%s  %.1f payments/s  approval %s  pending %d  in doubt %d  errors %d  leader %s  breakers %s  %s",
		time.Now().Format("15:04:05"), float64(cur.payments-last.payments)/secs, rate,
		cur.pending, cur.inDoubt, cur.errors-last.errors, leader, breakers, export)
}

// breakerSummary says which breakers are not closed ("all closed" when
// none), per provider and method.
func breakerSummary(states map[string]map[string]txswitch.BreakerState) string {
	var open []string
	for p, ms := range states {
		for m, s := range ms {
			if s != txswitch.BreakerClosed {
				open = append(open, p+"/"+m+"="+string(s))
			}
		}
	}
	if len(open) == 0 {
		return "all closed"
	}
	sort.Strings(open)
	return strings.Join(open, " ")
}

// demoAPIKeyFile keeps the demo merchant's API key in the data dir: the
// cluster stores only its hash, in the routing configuration it seeds on
// the first run, so a restart on the same --data-dir must print (and send
// its traffic with) that same key, not a new one it would refuse.
const demoAPIKeyFile = "demo-api-key"

func demoAPIKey(dir string) (string, error) {
	path := filepath.Join(dir, demoAPIKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(strings.TrimSpace(string(b))) > 0:
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read the demo API key: %w", err)
	}
	r := make([]byte, 16)
	_, _ = rand.Read(r) // crypto/rand.Read never fails (Go >= 1.24)
	key := "sk_demo_" + hex.EncodeToString(r)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep the demo API key: %w", err)
	}
	return key, nil
}
