package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
)

// ProviderFault changes a simulated PSP's behaviour for a while. The sim
// replaces its behaviour wholesale, so the fault applies its change on top
// of Base (the scenario's normal behaviour, e.g. async iDEAL) and Undo
// puts Base back: faults on different PSPs never interfere, and two faults
// on one PSP at once are not supported (the later Undo wins).
type ProviderFault struct {
	record
	sim    *sim.Server
	base   sim.Behaviour
	change func(*sim.Behaviour)
	// probe reads the counter that proves the fault touched a request.
	probe  func(sim.Stats) uint64
	before uint64
	what   string
}

// ProviderSpec describes a provider fault; the constructors below fill it.
type ProviderSpec struct {
	Kind   string
	Name   string // the PSP's name, for the record
	Sim    *sim.Server
	Base   sim.Behaviour
	Change func(*sim.Behaviour)
	// Probe counts requests the fault touched (nil: the fault cannot be
	// observed at the PSP, e.g. a refused connection).
	Probe func(sim.Stats) uint64
	What  string // what Probe counts, for the record
}

// NewProviderFault builds a provider fault from spec.
func NewProviderFault(spec ProviderSpec) *ProviderFault {
	return &ProviderFault{record: record{kind: spec.Kind, target: spec.Name}, sim: spec.Sim, base: spec.Base,
		change: spec.Change, probe: spec.Probe, what: spec.What}
}

func refused(s sim.Stats) uint64   { return s.RefusedUnavailable }
func processed(s sim.Stats) uint64 { return s.Processed }

// everyMethod applies mb's fault fields to the "*" entry and to every
// method entry Base already has, keeping their async settings: a method
// entry replaces "*" in the sim, so faulting only "*" would miss them.
func everyMethod(b *sim.Behaviour, f func(*sim.MethodBehaviour)) {
	if b.Methods == nil {
		b.Methods = map[string]sim.MethodBehaviour{}
	}
	if _, ok := b.Methods[sim.AnyMethod]; !ok {
		b.Methods[sim.AnyMethod] = sim.MethodBehaviour{}
	}
	for m, mb := range b.Methods {
		f(&mb)
		b.Methods[m] = mb
	}
}

// Unavailable answers every money-moving request 503 before processing.
func Unavailable(name string, s *sim.Server, base sim.Behaviour) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_unavailable", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) { everyMethod(b, func(mb *sim.MethodBehaviour) { mb.Unavailable = true }) },
		Probe:  refused, What: "requests refused with 503"})
}

// ErrorRate answers a share of requests 503 before processing.
func ErrorRate(name string, s *sim.Server, base sim.Behaviour, rate float64) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_error_rate", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) { everyMethod(b, func(mb *sim.MethodBehaviour) { mb.ErrorRate = rate }) },
		Probe:  refused, What: "requests refused with 503"})
}

// Refuse stops the PSP listening: connection refused. Nothing at the PSP
// can see the requests it refused, so the scenario must observe the effect
// at the switch (an open breaker, failovers).
func Refuse(name string, s *sim.Server, base sim.Behaviour) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_refuse", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) { b.Outage = &sim.Outage{Mode: sim.OutageRefuse} }})
}

// Latency delays every money-moving request by a fixed time.
func Latency(name string, s *sim.Server, base sim.Behaviour, d time.Duration) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_latency", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) {
			everyMethod(b, func(mb *sim.MethodBehaviour) { mb.Latency = sim.Latency{FixedMillis: d.Milliseconds()} })
		},
		Probe: processed, What: "requests processed while slow"})
}

// Hang delays every money-moving request by d, meant to exceed the
// switch's provider timeout: the switch abandons each call (in doubt) and
// the PSP, seeing the client gone, processes nothing. Nothing at the PSP
// counts abandoned requests, so the effect must be observed at the switch
// (payments in doubt); the scenario loader insists on such an expectation.
func Hang(name string, s *sim.Server, base sim.Behaviour, d time.Duration) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_hang", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) {
			everyMethod(b, func(mb *sim.MethodBehaviour) { mb.Latency = sim.Latency{FixedMillis: d.Milliseconds()} })
		}})
}

// ChargeThenTimeout processes a share of requests (the ledger records the
// charge) and never answers them in time: the switch must go in doubt and
// resolve by status inquiry, never charge again.
func ChargeThenTimeout(name string, s *sim.Server, base sim.Behaviour, rate float64, stall time.Duration) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_charge_then_timeout", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) {
			everyMethod(b, func(mb *sim.MethodBehaviour) {
				mb.ChargeThenTimeoutRate = rate
				mb.StallMillis = stall.Milliseconds()
			})
		},
		Probe: processed, What: "requests processed (some stalled)"})
}

// Malformed processes a share of requests and answers garbled JSON.
func Malformed(name string, s *sim.Server, base sim.Behaviour, rate float64) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_malformed", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) { everyMethod(b, func(mb *sim.MethodBehaviour) { mb.MalformedRate = rate }) },
		Probe:  processed, What: "requests processed (some answered garbled)"})
}

// SlowNotify delays (and duplicates) the notifications of asynchronous
// methods already configured async in Base.
func SlowNotify(name string, s *sim.Server, base sim.Behaviour, delay time.Duration, duplicates int) *ProviderFault {
	return NewProviderFault(ProviderSpec{Kind: "provider_slow_notify", Name: name, Sim: s, Base: base,
		Change: func(b *sim.Behaviour) {
			for m, mb := range b.Methods {
				if mb.Async != nil {
					a := *mb.Async
					a.NotifyDelayMillis = delay.Milliseconds()
					a.Duplicates = duplicates
					mb.Async = &a
					b.Methods[m] = mb
				}
			}
		},
		// Any delivery attempt counts: a late notification that the node
		// refused (and the PSP retries) was still slowed by the fault.
		Probe: func(st sim.Stats) uint64 {
			return st.NotificationsSent + st.NotificationsFailed + st.NotificationsDropped
		},
		What: "notifications sent late (delivered, failed or dropped)"})
}

// Inject installs Base with the fault applied.
func (f *ProviderFault) Inject(context.Context) error {
	b, err := cloneBehaviour(f.base)
	if err == nil {
		f.change(&b)
		if f.probe != nil {
			f.before = f.probe(f.sim.Stats())
		}
		err = f.sim.SetBehaviour(b)
	}
	if err != nil {
		err = fmt.Errorf("%s on %s: %w", f.kind, f.target, err)
	}
	f.add("inject", false, "", err)
	return err
}

// Undo puts Base back and records whether the fault touched a request.
func (f *ProviderFault) Undo(context.Context) error {
	var n uint64
	if f.probe != nil {
		n = f.probe(f.sim.Stats()) - f.before
	}
	err := f.sim.SetBehaviour(f.base)
	if err != nil {
		err = fmt.Errorf("undo %s on %s: %w", f.kind, f.target, err)
	}
	f.add("undo", false, "", err)
	if f.probe != nil {
		f.add("effect", n > 0, fmt.Sprintf("%d %s", n, f.what), nil)
	}
	return err
}

// cloneBehaviour deep-copies b (maps and pointers), so a fault never
// mutates the Base it restores.
func cloneBehaviour(b sim.Behaviour) (sim.Behaviour, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return sim.Behaviour{}, fmt.Errorf("copy behaviour: %w", err)
	}
	var out sim.Behaviour
	if err := json.Unmarshal(raw, &out); err != nil {
		return sim.Behaviour{}, fmt.Errorf("copy behaviour: %w", err)
	}
	return out, nil
}
