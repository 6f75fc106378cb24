package chaos

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Fault is one injectable fault. Inject and Undo are each called at most
// once per injection, in that order; Undo after a failed Inject is
// allowed and must be harmless.
type Fault interface {
	// Kind is the registry name ("provider_unavailable", "node_stop"...).
	Kind() string
	// Target names what it hits, resolved at Inject ("psp_a", "n2"...).
	Target() string
	Inject(ctx context.Context) error
	Undo(ctx context.Context) error
	// Fired returns what happened so far, in order.
	Fired() []Event
}

// Event is one thing a fault did.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	// Action is "inject", "undo" or "effect" (what the fault observably
	// did, reported at Undo).
	Action string `json:"action"`
	// Hit is set on "effect" events: whether the fault touched anything.
	Hit    bool   `json:"hit,omitempty"`
	Detail string `json:"detail,omitempty"`
	Err    string `json:"err,omitempty"`
}

// record is the Fired bookkeeping shared by every fault.
type record struct {
	mu     sync.Mutex
	kind   string
	target string
	events []Event
}

func (r *record) Kind() string { return r.kind }

func (r *record) Target() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target
}

func (r *record) setTarget(t string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target = t
}

func (r *record) add(action string, hit bool, detail string, err error) {
	r.addAt(time.Now(), action, hit, detail, err)
}

// addAt records an event that began at start: a node stop can take
// seconds (the API drains in-flight requests), and the fault took effect
// when it began, not when the drain ended.
func (r *record) addAt(start time.Time, action string, hit bool, detail string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took := time.Since(start); took > 100*time.Millisecond {
		detail = strings.TrimSpace(detail + " (took " + took.Round(time.Millisecond).String() + ")")
	}
	e := Event{At: start, Kind: r.kind, Target: r.target, Action: action, Hit: hit, Detail: detail}
	if err != nil {
		e.Err = err.Error()
	}
	r.events = append(r.events, e)
}

func (r *record) Fired() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Summary says whether a fault fired: it was injected without error and,
// when it reported an effect, the effect hit something.
func Summary(events []Event) (injected, hit bool, why string) {
	effect := false
	for _, e := range events {
		switch e.Action {
		case "inject":
			if e.Err == "" {
				injected = true
			} else {
				why = "inject failed: " + e.Err
			}
		case "effect":
			effect = true
			hit = hit || e.Hit
			if !e.Hit {
				why = "no effect: " + e.Detail
			}
		}
	}
	if !injected && why == "" {
		why = "never injected"
	}
	if !effect {
		hit = injected
	}
	return injected, hit, why
}
