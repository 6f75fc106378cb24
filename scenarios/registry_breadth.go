package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// The breadth fault kinds: provider faults limited to one operation (so a
// scenario can place a fault at the capture, the refund or the
// cancellation of payments authorized before it), and routing
// configuration changes made through the admin API in the middle of the
// traffic (undone by putting the previous configuration back).
func init() {
	for _, op := range []txswitch.ProviderOp{txswitch.OpCapture, txswitch.OpRefund, txswitch.OpCancel} {
		faultKinds["provider_unavailable_on_"+string(op)] = faultDef{
			doc: fmt.Sprintf("PSP answers 503 before processing, only to %s requests", op), target: targetProvider,
			build: func(e *env, f Fault) (chaos.Fault, error) {
				return opFault(f, e, op, func(mb *sim.MethodBehaviour) { mb.Unavailable = true }), nil
			}}
		faultKinds["provider_charge_then_timeout_on_"+string(op)] = faultDef{
			doc:    fmt.Sprintf("PSP processes a share (rate) of %s requests and stalls for stall", op),
			target: targetProvider, params: []string{"rate", "stall"},
			build: func(e *env, f Fault) (chaos.Fault, error) {
				return opFault(f, e, op, func(mb *sim.MethodBehaviour) {
					mb.ChargeThenTimeoutRate, mb.StallMillis = f.Rate, f.Stall.D().Milliseconds()
				}), nil
			}}
	}
	for _, op := range []txswitch.ProviderOp{txswitch.OpCapture, txswitch.OpRefund} {
		faultKinds["provider_malformed_on_"+string(op)] = faultDef{
			doc:    fmt.Sprintf("PSP processes a share (rate) of %s requests and answers garbled JSON", op),
			target: targetProvider, params: []string{"rate"},
			build: func(e *env, f Fault) (chaos.Fault, error) {
				return opFault(f, e, op, func(mb *sim.MethodBehaviour) { mb.MalformedRate = f.Rate }), nil
			}}
		faultKinds["provider_hang_on_"+string(op)] = faultDef{
			doc:    fmt.Sprintf("PSP answers %s requests after latency, beyond the provider timeout (needs an in-doubt expectation)", op),
			target: targetProvider, params: []string{"latency"},
			build: func(e *env, f Fault) (chaos.Fault, error) {
				// A hung request books nothing: the effect shows at the
				// switch (the in-doubt expectation), not at the PSP.
				pf := opFault(f, e, op, func(mb *sim.MethodBehaviour) { mb.Latency = sim.Latency{FixedMillis: f.Latency.D().Milliseconds()} })
				pf.unobservable = true
				return pf, nil
			}}
	}
	faultKinds["rolling_upgrade"] = faultDef{doc: "every node restarted in turn (followers first) on a binary running one more cluster version; the gate must move only after the last", target: targetNone,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewRollingUpgrade(e.c), nil }}
	faultKinds["leader_transfer"] = faultDef{doc: "graceful leader change through the admin API (POST /v1/admin/leader) to a follower", target: targetNone,
		build: func(e *env, f Fault) (chaos.Fault, error) { return &transferFault{e: e}, nil }}
	for name, c := range configChanges {
		faultKinds["config_"+name] = faultDef{doc: "routing configuration changed through the admin API: " + c.doc, target: targetNone,
			build: func(e *env, f Fault) (chaos.Fault, error) {
				return &configFault{kind: "config_" + name, e: e, change: c.change, refused: c.refused}, nil
			}}
	}
}

// opFault builds a provider fault that touches only op requests (status
// inquiries stay healthy, so in-doubt resolution works), and proves it
// fired by counting the PSP's refusals or ledger entries of op. The PSP
// is found through the tier (e.t): both tiers run the simulated PSPs in
// this process, and e.c is nil in the process tier.
func opFault(f Fault, e *env, op txswitch.ProviderOp, set func(*sim.MethodBehaviour)) *countedFault {
	s := e.t.sims()[f.Target]
	inner := chaos.NewProviderFault(chaos.ProviderSpec{Kind: f.Kind, Name: f.Target, Sim: s, Base: e.baseBehaviour,
		Change: func(b *sim.Behaviour) {
			if b.Methods == nil {
				b.Methods = map[string]sim.MethodBehaviour{}
			}
			if _, ok := b.Methods[sim.AnyMethod]; !ok {
				b.Methods[sim.AnyMethod] = sim.MethodBehaviour{}
			}
			for m, mb := range b.Methods {
				mb.Ops = []txswitch.ProviderOp{op}
				set(&mb)
				b.Methods[m] = mb
			}
		}})
	return &countedFault{ProviderFault: inner, sim: s, op: op}
}

// countedFault adds to a provider fault the effect the PSP saw: requests
// of op refused or booked while the fault was on.
type countedFault struct {
	*chaos.ProviderFault
	sim *sim.Server
	op  txswitch.ProviderOp
	// unobservable faults record no effect: the PSP cannot see them.
	unobservable bool

	mu              sync.Mutex
	refused, booked uint64
	effect          *chaos.Event
}

func (f *countedFault) count() (refused, booked uint64) {
	for _, l := range f.sim.Ledger() {
		if l.Op == f.op {
			booked++
		}
	}
	return f.sim.Stats().RefusedUnavailable, booked
}

func (f *countedFault) Inject(ctx context.Context) error {
	f.mu.Lock()
	f.refused, f.booked = f.count()
	f.mu.Unlock()
	return f.ProviderFault.Inject(ctx)
}

func (f *countedFault) Undo(ctx context.Context) error {
	err := f.ProviderFault.Undo(ctx)
	if f.unobservable {
		return err
	}
	refused, booked := f.count()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, b := refused-f.refused, booked-f.booked
	f.effect = &chaos.Event{At: time.Now(), Kind: f.Kind(), Target: f.Target(), Action: "effect", Hit: r+b > 0,
		Detail: fmt.Sprintf("%d requests refused, %d %s requests booked while the fault was on", r, b, f.op)}
	return err
}

func (f *countedFault) Fired() []chaos.Event {
	out := f.ProviderFault.Fired()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.effect != nil {
		out = append(out, *f.effect)
	}
	return out
}

// configChange is a named change of the routing configuration.
type configChange struct {
	doc    string
	change func(*txswitch.RoutingConfig) error
	// refused is the error code the switch must refuse the change with
	// (empty: it must accept it). Such a fault fires when the refusal
	// comes; an accepted change is the defect it guards, and is undone.
	refused string
}

func method(cfg *txswitch.RoutingConfig, name string) (*txswitch.MethodConfig, error) {
	for i := range cfg.Methods {
		if cfg.Methods[i].Name == name {
			return &cfg.Methods[i], nil
		}
	}
	return nil, fmt.Errorf("no method %s in the configuration", name)
}

var configChanges = map[string]configChange{
	"card_reroute": {doc: "card routes reversed: psp_b first, psp_a second", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "card")
		if err == nil {
			slices.Reverse(m.Routes)
		}
		return err
	}},
	"card_single_route": {doc: "card served by psp_a alone (psp_b route removed)", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "card")
		if err == nil {
			m.Routes = slices.DeleteFunc(m.Routes, func(r txswitch.RouteConfig) bool { return r.Provider != "psp_a" })
		}
		return err
	}},
	"ideal_disabled": {doc: "iDEAL disabled", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "ideal")
		if err == nil {
			m.Enabled = false
		}
		return err
	}},
	"ideal_surcharge": {doc: "iDEAL surcharge raised to 0.50 + 1.5%", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "ideal")
		if err == nil {
			m.Surcharge = txswitch.SurchargeConfig{FixedMinor: 50, BasisPoints: 150}
		}
		return err
	}},
	"klarna_ceiling": {doc: "Klarna's euro ceiling lowered to EUR 5.00 (its limits are per market route, in each market's currency)", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "klarna_paylater")
		if err != nil {
			return err
		}
		n := 0
		for i := range m.Routes {
			if slices.Equal(m.Routes[i].Currencies, []string{"EUR"}) {
				m.Routes[i].MaxAmount = 500
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("klarna_paylater has no EUR route")
		}
		return nil
	}},
	"card_fee_per_currency": {doc: "a card fee per currency: EUR 0.25, SEK 3.00, none in other currencies, plus 1.5 %", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "card")
		if err == nil {
			m.Surcharge = txswitch.SurchargeConfig{FixedByCurrency: map[string]int64{"EUR": 25, "SEK": 300}, BasisPoints: 150}
		}
		return err
	}},
	"card_hold_all": {doc: "the high-value card review rule lowered to 0.01: every EUR card payment is held", change: func(c *txswitch.RoutingConfig) error {
		for i := range c.FraudRules {
			if c.FraudRules[i].Name == "card_high_value" {
				c.FraudRules[i].MinAmount = 1
				return nil
			}
		}
		return fmt.Errorf("no card_high_value fraud rule")
	}},
	"provider_timeout_short": {doc: "every provider's timeout lowered to 250ms", change: func(c *txswitch.RoutingConfig) error {
		for i := range c.Providers {
			c.Providers[i].TimeoutMillis = 250
		}
		return nil
	}},
	"sepa_reroute": {doc: "SEPA routes reversed: psp_a first", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "sepa_debit")
		if err == nil {
			slices.Reverse(m.Routes)
		}
		return err
	}},
	"bancontact_disabled": {doc: "Bancontact disabled", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "bancontact")
		if err == nil {
			m.Enabled = false
		}
		return err
	}},
	"card_no_moto": {doc: "card no longer accepted on the moto channel", change: func(c *txswitch.RoutingConfig) error {
		m, err := method(c, "card")
		if err == nil {
			m.Channels = slices.DeleteFunc(m.Channels, func(ch string) bool { return ch == txswitch.ChannelMOTO })
		}
		return err
	}},
	"psp_a_dropped": {doc: "psp_a removed from the configuration (its routes too, a method left without any disabled) while payments it approved wait for captures and refunds: refused with provider_has_payments",
		refused: txswitch.CodeProviderHasPayments, change: func(c *txswitch.RoutingConfig) error {
			n := len(c.Providers)
			c.Providers = slices.DeleteFunc(c.Providers, func(p txswitch.ProviderConfig) bool { return p.Name == "psp_a" })
			if len(c.Providers) == n {
				return fmt.Errorf("no provider psp_a")
			}
			for i := range c.Methods {
				m := &c.Methods[i]
				m.Routes = slices.DeleteFunc(m.Routes, func(r txswitch.RouteConfig) bool { return r.Provider == "psp_a" })
				if len(m.Routes) == 0 {
					m.Enabled = false
				}
			}
			return nil
		}},
	"breaker_hair_trigger": {doc: "every provider's breaker opens on the first failure", change: func(c *txswitch.RoutingConfig) error {
		for i := range c.Providers {
			c.Providers[i].Breaker.ConsecutiveFailures = 1
		}
		return nil
	}},
}

// configFault changes the routing configuration through the admin API and
// puts the previous one back at Undo. It fired when the changed
// configuration was applied (its version reached every running node).
type configFault struct {
	kind    string
	e       *env
	change  func(*txswitch.RoutingConfig) error
	refused string

	eventLog
	mu    sync.Mutex
	saved *txswitch.RoutingConfig
}

func (f *configFault) Kind() string   { return f.kind }
func (f *configFault) Target() string { return "" }

func (f *configFault) add(at time.Time, action string, hit bool, detail string, err error) {
	ev := chaos.Event{At: at, Kind: f.kind, Action: action, Hit: hit, Detail: detail}
	if err != nil {
		ev.Err = err.Error()
	}
	f.record(ev)
}

// eventLog is the Fired bookkeeping of the faults defined here.
type eventLog struct {
	logMu  sync.Mutex
	events []chaos.Event
}

func (l *eventLog) record(ev chaos.Event) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) Fired() []chaos.Event {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	return slices.Clone(l.events)
}

// configApplyWait bounds the wait for every running node to apply a new
// configuration (a partitioned node may not, until it heals).
const configApplyWait = 5 * time.Second

// Inject records the injection when the change has been committed and
// applied by every running node, so a window starting there only holds
// requests that saw the new configuration.
func (f *configFault) Inject(ctx context.Context) error {
	var cfg txswitch.RoutingConfig
	err := f.e.adminCall(ctx, http.MethodGet, "/v1/admin/config", nil, &cfg)
	if err == nil {
		var saved txswitch.RoutingConfig
		raw, _ := json.Marshal(cfg)
		if err = json.Unmarshal(raw, &saved); err == nil {
			f.mu.Lock()
			f.saved = &saved
			f.mu.Unlock()
			err = f.change(&cfg)
		}
	}
	var applied txswitch.RoutingConfig
	if err == nil {
		err = f.e.adminCall(ctx, http.MethodPut, "/v1/admin/config", cfg, &applied)
	}
	if f.refused != "" && err != nil && strings.Contains(err.Error(), `"code":"`+f.refused+`"`) {
		f.mu.Lock()
		f.saved = nil // nothing changed, nothing to undo
		f.mu.Unlock()
		f.add(time.Now(), "inject", false, "", nil)
		f.add(time.Now(), "effect", true, "refused with "+f.refused+" as it must be", nil)
		return nil
	}
	if f.refused != "" && err == nil {
		err = fmt.Errorf("the switch accepted the change as version %d; it must refuse it with %s", applied.Version, f.refused)
		f.mu.Lock()
		if f.saved != nil {
			f.saved.Version = applied.Version
		}
		f.mu.Unlock()
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", f.kind, err)
		f.add(time.Now(), "inject", false, "", err)
		return err
	}
	// The undo puts the saved configuration back only over this change
	// (PUT config refuses a stale version): a change someone else made
	// meanwhile is reported, not silently overwritten.
	f.mu.Lock()
	if f.saved != nil {
		f.saved.Version = applied.Version
	}
	f.mu.Unlock()
	n, of := f.waitApplied(ctx, applied.Version)
	f.add(time.Now(), "inject", false, fmt.Sprintf("config version %d applied on %d/%d running nodes", applied.Version, n, of), nil)
	f.add(time.Now(), "effect", n > 0, fmt.Sprintf("config version %d in force", applied.Version), nil)
	return nil
}

func (f *configFault) waitApplied(ctx context.Context, version uint64) (n, of int) {
	deadline := time.Now().Add(configApplyWait)
	for {
		n, of = 0, 0
		for _, nd := range f.e.c.Running() {
			of++
			if st, err := nd.NodeStatus(); err == nil && st.ConfigVersion >= version {
				n++
			}
		}
		if n == of || time.Now().After(deadline) || ctx.Err() != nil {
			return n, of
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Undo puts the saved configuration back; the undo is recorded when it
// starts, so a window ending there only holds the changed configuration.
func (f *configFault) Undo(ctx context.Context) error {
	f.mu.Lock()
	saved := f.saved
	f.mu.Unlock()
	at := time.Now()
	if saved == nil {
		f.add(at, "undo", false, "nothing to restore", nil)
		return nil
	}
	var applied txswitch.RoutingConfig
	err := f.e.adminCall(ctx, http.MethodPut, "/v1/admin/config", saved, &applied)
	if err != nil {
		err = fmt.Errorf("undo %s: %w", f.kind, err)
	}
	f.add(at, "undo", false, fmt.Sprintf("previous configuration back as version %d", applied.Version), err)
	return err
}

// transferFault hands leadership to a follower through the admin API: a
// graceful leader change, unlike a crash. It fired when a different
// leader was seen afterwards.
type transferFault struct {
	eventLog
	e *env
}

func (f *transferFault) Kind() string   { return "leader_transfer" }
func (f *transferFault) Target() string { return "" }

func (f *transferFault) add(ev chaos.Event) {
	ev.Kind = "leader_transfer"
	f.record(ev)
}

// transferWait bounds the wait for the new leader to show.
const transferWait = 5 * time.Second

func (f *transferFault) Inject(ctx context.Context) error {
	start := time.Now()
	lead := f.e.c.LeaderNode()
	var from, to uint64
	if lead != nil {
		from = lead.Raft().Status().ID
		for _, n := range f.e.c.Running() {
			if id := n.Raft().Status().ID; id != from {
				to = id
				break
			}
		}
	}
	if from == 0 || to == 0 {
		err := fmt.Errorf("leader_transfer: no leader or no follower to hand over to")
		f.add(chaos.Event{At: start, Action: "inject", Err: err.Error()})
		return err
	}
	err := f.e.adminCall(ctx, http.MethodPost, "/v1/admin/leader", map[string]uint64{"to": to}, nil)
	if err != nil {
		err = fmt.Errorf("leader_transfer %d -> %d: %w", from, to, err)
		f.add(chaos.Event{At: start, Action: "inject", Err: err.Error()})
		return err
	}
	f.add(chaos.Event{At: start, Action: "inject", Target: fmt.Sprintf("%d->%d", from, to), Detail: fmt.Sprintf("asked leader %d to hand over to %d", from, to)})
	var now uint64
	for deadline := time.Now().Add(transferWait); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		if n := f.e.c.LeaderNode(); n != nil {
			if now = n.Raft().Status().ID; now != from {
				break
			}
		}
	}
	f.add(chaos.Event{At: time.Now(), Action: "effect", Hit: now != 0 && now != from, Detail: fmt.Sprintf("leader %d -> %d", from, now)})
	return nil
}

// Undo does nothing: the new leader stays.
func (f *transferFault) Undo(context.Context) error {
	f.add(chaos.Event{At: time.Now(), Action: "undo", Detail: "leadership stays where it went"})
	return nil
}
