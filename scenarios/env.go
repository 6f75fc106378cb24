package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// env is one scenario's running world.
type env struct {
	sc            *Scenario
	seed          uint64
	c             *chaos.Cluster
	hist          *History
	baseBehaviour sim.Behaviour
	start         time.Time
	admin         *http.Client
	// t is the running cluster in either tier; c (in-process tier) and
	// p (process tier) are for the fault builders of that tier, nil in
	// the other.
	t tierCluster
	p *chaos.ProcCluster
	// ext runs the central database and disks (nil-safe when unused).
	ext *extEnv

	panicMu sync.Mutex
	panics  []string
}

// recovered, deferred in a goroutine of the run, turns a panic there (a
// bug of the runner, e.g. a flow reading an answer it did not expect)
// into a failure of this scenario instead of the end of the whole run.
func (e *env) recovered(what string) {
	if p := recover(); p != nil {
		e.panicMu.Lock()
		defer e.panicMu.Unlock()
		e.panics = append(e.panics, fmt.Sprintf("%s panicked: %v\n%s", what, p, stack()))
	}
}

// panicked is the first panic recovered, if any.
func (e *env) panicked() error {
	e.panicMu.Lock()
	defer e.panicMu.Unlock()
	if len(e.panics) == 0 {
		return nil
	}
	return fmt.Errorf("runner bug: %s (%d panics in all)", e.panics[0], len(e.panics))
}

// stack is the panicking goroutine's stack, bounded for the reports.
func stack() string {
	const maxStack = 4 << 10
	b := debug.Stack()
	if len(b) > maxStack {
		b = append(b[:maxStack], "\n…"...)
	}
	return string(b)
}

// redirectMethods complete asynchronously at the simulated PSPs, as the
// routing configuration's redirect methods do at real ones.
var redirectMethods = []string{"ideal", "bancontact", "mobilepay", "klarna_paylater"}

func baseBehaviour(t Tuning) sim.Behaviour {
	b := sim.Behaviour{Methods: map[string]sim.MethodBehaviour{}}
	for _, m := range redirectMethods {
		b.Methods[m] = sim.MethodBehaviour{Async: &sim.Async{CompleteAfterMillis: t.AsyncComplete.D().Milliseconds()}}
	}
	return b
}

// pickNode chooses the node for the n-th request.
func (e *env) pickNode(n uint64) string {
	nodes := e.t.apiNodes()
	var addrs []string
	for _, nd := range nodes {
		switch e.sc.Traffic.Target {
		case "leader":
			if nd.leader {
				addrs = append(addrs, nd.addr)
			}
		case "followers":
			if !nd.leader {
				addrs = append(addrs, nd.addr)
			}
		default:
			addrs = append(addrs, nd.addr)
		}
	}
	if len(addrs) == 0 {
		for _, nd := range nodes {
			addrs = append(addrs, nd.addr)
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	return addrs[n%uint64(len(addrs))]
}

// adminCall sends an admin request to the leader (any node would
// forward; the leader answers without a hop).
func (e *env) adminCall(ctx context.Context, method, path string, body any, out any) error {
	var lastErr error
	for attempt := 0; attempt < 40; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s %s: %w (last: %v)", method, path, ctx.Err(), lastErr)
			case <-time.After(100 * time.Millisecond):
			}
		}
		lead := e.t.leaderAddr()
		if lead == "" {
			lastErr = fmt.Errorf("no leader")
			continue
		}
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rd = bytes.NewReader(b)
		}
		hr, err := http.NewRequestWithContext(ctx, method, "http://"+lead+path, rd)
		if err != nil {
			return err
		}
		hr.Header.Set("Authorization", "Bearer "+e.t.adminToken())
		hr.Header.Set("Content-Type", "application/json")
		resp, err := e.admin.Do(hr)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			lastErr = fmt.Errorf("503 %s", b)
			continue
		}
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	return fmt.Errorf("%s %s: %v", method, path, lastErr)
}

// tune replaces the seeded routing configuration's provider timeouts and
// breakers with the scenario's, and waits until every node applied it.
func (e *env) tune(ctx context.Context) error {
	var cfg txswitch.RoutingConfig
	if err := e.adminCall(ctx, http.MethodGet, "/v1/admin/config", nil, &cfg); err != nil {
		return fmt.Errorf("read routing config: %w", err)
	}
	t := e.sc.Config
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		p.TimeoutMillis = t.ProviderTimeout.D().Milliseconds()
		p.Breaker.OpenMillis = t.BreakerOpen.D().Milliseconds()
		p.Breaker.ConsecutiveFailures = uint32(t.BreakerFailures)
	}
	var applied txswitch.RoutingConfig
	if err := e.adminCall(ctx, http.MethodPut, "/v1/admin/config", cfg, &applied); err != nil {
		return fmt.Errorf("put routing config: %w", err)
	}
	for {
		if e.t.configApplied(applied.Version) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for config version %d on every node: %w", applied.Version, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Observation is one sample of the cluster's own view, taken in process
// every observeEvery: who leads, at which term, and each node's breakers.
type Observation struct {
	At     time.Time `json:"at"`
	Leader uint64    `json:"leader"`
	Term   uint64    `json:"term"`
	// Open lists "provider/method" breakers some node reports open.
	Open []string `json:"open,omitempty"`
	// LeaderOpen are the leader's open breakers ("provider/method"), each
	// marked with its transition count and when it opened: two
	// observations under one leader and term with the same mark saw a
	// breaker open throughout, not merely at both ends. Nil when the
	// leader does not report counts (an older binary).
	LeaderOpen map[string]OpenMark `json:"leader_open,omitempty"`
	Members    int                 `json:"members"`
}

// OpenMark tells one stretch of an open breaker from another. The time
// tells apart a breaker the configuration replaced (its count starts
// again from zero).
type OpenMark struct {
	Changes uint64    `json:"changes"`
	Since   time.Time `json:"since"`
}

func (m OpenMark) same(o OpenMark) bool { return m.Changes == o.Changes && m.Since.Equal(o.Since) }

const observeEvery = 50 * time.Millisecond

func observe(ctx context.Context, e *env, out *[]Observation, mu *sync.Mutex) {
	t := time.NewTicker(observeEvery)
	defer t.Stop()
	for {
		o := Observation{At: time.Now()}
		e.t.sample(&o)
		mu.Lock()
		*out = append(*out, o)
		mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
