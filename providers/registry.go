package providers

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	txswitch "github.com/txswitch/txswitch/switch"
	"go.uber.org/zap"
)

// Bounds of a Registry.
const (
	// DefaultMaxMethods bounds the breakers per provider. Method names come
	// from the routing configuration, so the bound only guards against a bug
	// feeding arbitrary strings to Get; past it Get reports the provider as
	// unavailable (ok=false).
	DefaultMaxMethods = 256
	// maxPendingChanges bounds state changes recorded but not yet handed to
	// OnStateChange. They are delivered right after the breaker call that
	// caused them, so the queue only fills if the callback is stuck; then the
	// oldest change is dropped and a warning logged.
	maxPendingChanges = 1024
)

// StateChange is one breaker transition.
type StateChange struct {
	Provider string
	Method   string
	From, To txswitch.BreakerState
	At       time.Time
}

// RegistryOptions configures a Registry. All fields are optional.
type RegistryOptions struct {
	Logger *zap.Logger
	// Client is the pooled HTTP client shared by the adapters (default:
	// NewHTTPClient(DefaultMaxConnsPerHost)).
	Client *http.Client
	// NewProvider builds the unwrapped provider for a config (default: an
	// HTTPProvider). Tests of other packages may plug an in-process fake
	// here and still get real breakers.
	NewProvider func(cfg txswitch.ProviderConfig) txswitch.Provider
	// OnStateChange is called once per breaker transition, in order, outside
	// every lock of the Registry (it may call State/States), from the
	// goroutine whose call caused the change, once that call (Do, State or
	// States) is done with the breaker. It must be quick: it delays that
	// call's return.
	OnStateChange func(StateChange)
	MaxMethods    int
	// Registerer, when set, receives the provider metrics (calls by
	// result, call latency, breaker states and transitions).
	Registerer prometheus.Registerer
}

// Registry is the configured provider set with one breaker per (provider,
// payment method). It implements txswitch.Providers and is safe for
// concurrent use.
type Registry struct {
	opts RegistryOptions
	log  *zap.Logger

	mu        sync.RWMutex
	providers map[string]*entry

	changes changeQueue
	metrics *metrics // nil without RegistryOptions.Registerer
}

var _ txswitch.Providers = (*Registry)(nil)

type entry struct {
	cfg     txswitch.ProviderConfig
	breaker txswitch.BreakerConfig // normalized
	inner   txswitch.Provider

	mu       sync.Mutex
	breakers map[string]*breaker
}

// breaker is the breaker of one (provider, method) and a record of its
// transitions: a state read at two moments cannot tell whether the breaker
// left that state in between (an open breaker goes half-open, lets one
// probe through and opens again within milliseconds), the count can.
type breaker struct {
	cb      *gobreaker.CircuitBreaker[txswitch.ProviderResult]
	changes atomic.Uint64
	since   atomic.Int64 // unix ns of the last transition; 0: none yet
}

// BreakerView is one breaker as seen at one moment.
type BreakerView struct {
	State txswitch.BreakerState `json:"state"`
	// Changes counts the breaker's transitions since it was created: two
	// views with the same count saw no transition between them.
	Changes uint64 `json:"changes"`
	// Since is when the breaker entered State; zero if it never changed.
	Since time.Time `json:"since,omitzero"`
}

// NewRegistry returns an empty registry; call Configure to add providers.
func NewRegistry(opts RegistryOptions) *Registry {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.MaxMethods <= 0 {
		opts.MaxMethods = DefaultMaxMethods
	}
	if opts.NewProvider == nil {
		client := opts.Client
		opts.NewProvider = func(cfg txswitch.ProviderConfig) txswitch.Provider { return NewHTTPProvider(cfg, client) }
	}
	r := &Registry{opts: opts, log: opts.Logger, providers: map[string]*entry{}}
	r.changes.deliver = r.deliver
	r.changes.log = r.log
	if opts.Registerer != nil {
		r.metrics = newMetrics(opts.Registerer, r)
	}
	return r
}

// ValidateConfig checks one provider config the way Configure does.
func ValidateConfig(c txswitch.ProviderConfig) error {
	if c.Name == "" {
		return errors.New("provider name is empty")
	}
	if c.TimeoutMillis < 0 {
		return fmt.Errorf("provider %s: timeout_ms must not be negative", c.Name)
	}
	b := c.Breaker
	if b.FailureRatio < 0 || b.FailureRatio > 1 {
		return fmt.Errorf("provider %s: breaker.failure_ratio must be within [0,1]", c.Name)
	}
	if b.OpenMillis < 0 || b.IntervalMillis < 0 {
		return fmt.Errorf("provider %s: breaker durations must not be negative", c.Name)
	}
	if err := ValidateBaseURL(c.BaseURL); err != nil {
		return fmt.Errorf("provider %s: %w", c.Name, err)
	}
	return nil
}

// Configure replaces the provider set atomically: either every config is
// valid and the new set is in place, or nothing changes. A provider that
// remains with the same (normalized) breaker settings keeps its breakers and
// their state even if its URL or timeout changed; a provider whose breaker
// settings changed starts with closed breakers; removed providers vanish.
func (r *Registry) Configure(cfgs []txswitch.ProviderConfig) error {
	next := make(map[string]*entry, len(cfgs))
	for i, c := range cfgs {
		if err := ValidateConfig(c); err != nil {
			return fmt.Errorf("configure providers: entry %d: %w", i, err)
		}
		if _, dup := next[c.Name]; dup {
			return fmt.Errorf("configure providers: entry %d: duplicate provider %q", i, c.Name)
		}
		next[c.Name] = &entry{
			cfg:      c,
			breaker:  normalizeBreaker(c.Breaker),
			breakers: map[string]*breaker{},
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for name, e := range next {
		old, ok := r.providers[name]
		if ok && old.cfg == e.cfg {
			next[name] = old // unchanged: keep the adapter too
			continue
		}
		e.inner = r.opts.NewProvider(e.cfg)
		if ok && old.breaker == e.breaker {
			old.mu.Lock()
			for m, cb := range old.breakers {
				e.breakers[m] = cb
			}
			old.mu.Unlock()
		}
		r.log.Info("provider configured", zap.String("provider", name), zap.String("base_url", e.cfg.BaseURL),
			zap.Bool("kept_breakers", len(e.breakers) > 0))
	}
	for name := range r.providers {
		if _, ok := next[name]; !ok {
			r.log.Info("provider removed", zap.String("provider", name))
		}
	}
	r.providers = next
	return nil
}

// Get returns provider name seen through its breaker for method, creating
// the breaker (closed) on first use.
func (r *Registry) Get(name, method string) (txswitch.Provider, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.providers[name]
	if !ok {
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.breakers[method]
	if !ok {
		if len(e.breakers) >= r.opts.MaxMethods {
			r.log.Warn("too many payment methods for one provider; refusing a new breaker",
				zap.String("provider", name), zap.String("method", method), zap.Int("max", r.opts.MaxMethods))
			return nil, false
		}
		b = r.newBreaker(name, method, e.breaker)
		e.breakers[method] = b
	}
	return &breakerProvider{inner: e.inner, cb: b.cb, notify: r.changes.flush, metrics: r.metrics}, true
}

func (r *Registry) newBreaker(name, method string, c txswitch.BreakerConfig) *breaker {
	b := &breaker{}
	b.cb = gobreaker.NewCircuitBreaker[txswitch.ProviderResult](breakerSettings(name+"/"+method, c, func(from, to gobreaker.State) {
		at := time.Now().UTC()
		b.changes.Add(1)
		b.since.Store(at.UnixNano())
		r.changes.push(StateChange{Provider: name, Method: method, From: toBreakerState(from), To: toBreakerState(to), At: at})
	}))
	return b
}

// view reads the breaker; reading may move it from open to half-open, and
// the view then shows that transition.
func (b *breaker) view() BreakerView {
	v := BreakerView{State: toBreakerState(b.cb.State()), Changes: b.changes.Load()}
	if ns := b.since.Load(); ns != 0 {
		v.Since = time.Unix(0, ns).UTC()
	}
	return v
}

// State reports the breaker of (name, method); an unknown provider is
// closed. A method not used yet on this provider has no breaker of its
// own, and takes the provider's: open when every breaker the provider has
// is open (a provider that refuses card and iDEAL alike is down for SEPA
// too, and offering SEPA at checkout would only fail the shopper there),
// closed otherwise. The method learns its own health from its first call,
// which comes once a sibling goes half-open.
func (r *Registry) State(name, method string) txswitch.BreakerState {
	s := txswitch.BreakerClosed
	r.mu.RLock()
	if e, ok := r.providers[name]; ok {
		e.mu.Lock()
		if b, ok := e.breakers[method]; ok {
			s = toBreakerState(b.cb.State()) // may move open -> half-open
		} else if len(e.breakers) > 0 {
			s = txswitch.BreakerOpen
			for _, b := range e.breakers {
				if b.cb.State() != gobreaker.StateOpen {
					s = txswitch.BreakerClosed
					break
				}
			}
		}
		e.mu.Unlock()
	}
	r.mu.RUnlock()
	r.changes.flush()
	return s
}

// States reports every breaker created so far, by provider then method.
// Every configured provider is present, possibly with no methods.
func (r *Registry) States() map[string]map[string]txswitch.BreakerState { return StatesOf(r.Views()) }

// StatesOf keeps only the states of views.
func StatesOf(views map[string]map[string]BreakerView) map[string]map[string]txswitch.BreakerState {
	out := make(map[string]map[string]txswitch.BreakerState, len(views))
	for name, m := range views {
		out[name] = make(map[string]txswitch.BreakerState, len(m))
		for method, v := range m {
			out[name][method] = v.State
		}
	}
	return out
}

// Views reports every breaker created so far as States does, each with its
// transition count and the time of its last transition.
func (r *Registry) Views() map[string]map[string]BreakerView {
	out := map[string]map[string]BreakerView{}
	r.mu.RLock()
	for name, e := range r.providers {
		m := map[string]BreakerView{}
		e.mu.Lock()
		for method, b := range e.breakers {
			m[method] = b.view()
		}
		e.mu.Unlock()
		out[name] = m
	}
	r.mu.RUnlock()
	r.changes.flush()
	return out
}

// ForgetBreakers drops every breaker and returns how many there were: each
// (provider, method) starts closed on its next use, as on a node that never
// called it. A node that stops leading calls it. Only the leader routes
// payments, so a deposed leader's breakers stop moving in whatever state
// they were (one open for a provider that has since recovered stays open),
// and status and metrics would go on reporting them as current. A call in
// flight keeps the breaker it went through; its transitions are still
// delivered to OnStateChange.
func (r *Registry) ForgetBreakers() int {
	n := 0
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.providers {
		e.mu.Lock()
		n += len(e.breakers)
		e.breakers = map[string]*breaker{}
		e.mu.Unlock()
	}
	return n
}

// Names returns the configured provider names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.providers))
	for n := range r.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r *Registry) deliver(c StateChange) {
	r.log.Info("breaker state changed", zap.String("provider", c.Provider), zap.String("method", c.Method),
		zap.String("from", string(c.From)), zap.String("to", string(c.To)))
	if r.opts.OnStateChange != nil {
		r.opts.OnStateChange(c)
	}
}

// changeQueue hands breaker transitions to a callback in the order they
// happened, outside the breaker's lock (gobreaker reports them while holding
// it, so calling back into the breaker from there would deadlock).
type changeQueue struct {
	deliver func(StateChange)
	log     *zap.Logger

	mu      sync.Mutex
	pending []StateChange
	dropped int

	// delivering is held by the one goroutine currently delivering; others
	// leave their changes to it, which keeps delivery ordered and lets the
	// callback call State (which may flush) without deadlocking.
	delivering sync.Mutex
}

func (q *changeQueue) push(c StateChange) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) >= maxPendingChanges {
		q.pending = q.pending[1:]
		q.dropped++
	}
	q.pending = append(q.pending, c)
}

func (q *changeQueue) flush() {
	for {
		if !q.delivering.TryLock() {
			return // the holder delivers ours too: it re-checks after unlocking
		}
		for {
			q.mu.Lock()
			batch, dropped := q.pending, q.dropped
			q.pending, q.dropped = nil, 0
			q.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			if dropped > 0 && q.log != nil {
				q.log.Warn("breaker state changes dropped: callback too slow", zap.Int("dropped", dropped))
			}
			for _, c := range batch {
				q.deliver(c)
			}
		}
		q.delivering.Unlock()
		// A push may have raced with our last empty check after its own
		// TryLock failed; pick it up rather than strand it.
		q.mu.Lock()
		empty := len(q.pending) == 0
		q.mu.Unlock()
		if empty {
			return
		}
	}
}
