package memory

import (
	"context"
	"fmt"
	"sync"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Step is one scripted answer of a Provider: a result or an error.
type Step struct {
	Result txswitch.ProviderResult
	Err    error
	// Block, when set, holds the call until it is closed; if the call's
	// context ends first, the call fails in doubt with code "timeout", as
	// a real call past its deadline does.
	Block <-chan struct{}
}

// Provider is a scriptable fake txswitch.Provider. Each operation has a
// queue of steps; an empty queue answers approved (authorize, capture,
// refund, cancel) or not_found (status). Every call is recorded.
type Provider struct {
	name string

	mu     sync.Mutex
	queues map[txswitch.ProviderOp][]Step
	calls  []txswitch.ProviderRequest
	refs   int
}

var _ txswitch.Provider = (*Provider)(nil)

// NewProvider returns a provider named name.
func NewProvider(name string) *Provider {
	return &Provider{name: name, queues: map[txswitch.ProviderOp][]Step{}}
}

// Name is the provider's name.
func (p *Provider) Name() string { return p.name }

// Push appends scripted steps for op.
func (p *Provider) Push(op txswitch.ProviderOp, steps ...Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queues[op] = append(p.queues[op], steps...)
}

// Do answers from the script.
func (p *Provider) Do(ctx context.Context, req txswitch.ProviderRequest) (txswitch.ProviderResult, error) {
	step := p.next(req)
	if step.Block != nil {
		select {
		case <-step.Block:
		case <-ctx.Done():
			return txswitch.ProviderResult{}, &txswitch.ProviderError{Provider: p.name, Op: req.Op, Code: "timeout", Err: ctx.Err()}
		}
	}
	return step.Result, step.Err
}

func (p *Provider) next(req txswitch.ProviderRequest) Step {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, req)
	if q := p.queues[req.Op]; len(q) > 0 {
		p.queues[req.Op] = q[1:]
		return q[0]
	}
	if req.Op == txswitch.OpStatus {
		return Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}}
	}
	p.refs++
	return Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: fmt.Sprintf("%s-ref-%d", p.name, p.refs)}}
}

// Calls returns the recorded requests.
func (p *Provider) Calls() []txswitch.ProviderRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]txswitch.ProviderRequest(nil), p.calls...)
}

// CallsFor returns the recorded requests of op.
func (p *Provider) CallsFor(op txswitch.ProviderOp) []txswitch.ProviderRequest {
	var out []txswitch.ProviderRequest
	for _, c := range p.Calls() {
		if c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// Providers is a txswitch.Providers over memory Providers with settable
// breaker states. A provider whose breaker is open fails definitively with
// "breaker_open" without being called, as the real breaker does.
type Providers struct {
	mu      sync.Mutex
	byName  map[string]*Provider
	states  map[[2]string]txswitch.BreakerState
	configs []txswitch.ProviderConfig
}

var _ txswitch.Providers = (*Providers)(nil)

// NewProviders returns a set of the given providers.
func NewProviders(ps ...*Provider) *Providers {
	s := &Providers{byName: map[string]*Provider{}, states: map[[2]string]txswitch.BreakerState{}}
	for _, p := range ps {
		s.byName[p.name] = p
	}
	return s
}

// Configure records cfgs and adds a provider for each unknown name.
func (s *Providers) Configure(cfgs []txswitch.ProviderConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs = append([]txswitch.ProviderConfig(nil), cfgs...)
	for _, c := range cfgs {
		if _, ok := s.byName[c.Name]; !ok {
			s.byName[c.Name] = NewProvider(c.Name)
		}
	}
	return nil
}

// Configs returns what Configure was last given.
func (s *Providers) Configs() []txswitch.ProviderConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]txswitch.ProviderConfig(nil), s.configs...)
}

// Provider returns the named fake.
func (s *Providers) Provider(name string) *Provider {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byName[name]
}

// SetState sets the breaker of (name, method).
func (s *Providers) SetState(name, method string, st txswitch.BreakerState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states[[2]string{name, method}] = st
}

// Get returns the provider behind its (simulated) breaker.
func (s *Providers) Get(name, method string) (txswitch.Provider, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return &breakerView{p: p, s: s, method: method}, true
}

// State reports the breaker; unknown is closed.
func (s *Providers) State(name, method string) txswitch.BreakerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.states[[2]string{name, method}]; ok {
		return st
	}
	return txswitch.BreakerClosed
}

type breakerView struct {
	p      *Provider
	s      *Providers
	method string
}

func (b *breakerView) Name() string { return b.p.name }

func (b *breakerView) Do(ctx context.Context, req txswitch.ProviderRequest) (txswitch.ProviderResult, error) {
	if b.s.State(b.p.name, b.method) == txswitch.BreakerOpen && req.Op != txswitch.OpStatus {
		return txswitch.ProviderResult{}, &txswitch.ProviderError{Provider: b.p.name, Op: req.Op, Definitive: true, Code: "breaker_open",
			Err: fmt.Errorf("breaker for %s/%s is open", b.p.name, b.method)}
	}
	return b.p.Do(ctx, req)
}
