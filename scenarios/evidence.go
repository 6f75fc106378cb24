package scenarios

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Evidence is everything a scenario is judged on. None of it is the
// switch's own account of itself except Final (read back over the API from
// every node, after the run) and Observations (breaker and leader states,
// which only the switch can report).
type Evidence struct {
	Start     time.Time
	Calls     []Call
	Runs      []FlowRun
	Claims    []Claim
	Truncated int
	Dropped   int
	// ServedFloor is the share of started flows traffic_ran requires to
	// get a write acknowledged (servedFloor of the scenario; 0: the
	// default minServedShare).
	ServedFloor float64 `json:"served_floor,omitempty"`
	Ledgers     map[string][]sim.LedgerEntry
	// Final maps node -> order id -> the order as that node served it
	// (nil: 404 there). Nodes are keyed by API address.
	Final map[string]map[string]*txswitch.Order
	// FinalTimelines maps node -> order id -> that order's timeline as the
	// node served it (absent: the order was not there).
	FinalTimelines map[string]map[string][]txswitch.TimelineEvent
	ReadErrors     []string
	Timelines      map[string][]txswitch.TimelineEvent
	Faults         []FaultRun
	Observations   []Observation
	// Members is the raft membership size at the end (0: unknown).
	Members int
	// Ext is what the central database and disk extensions collected
	// (nil when the scenario uses neither).
	Ext *ExtEvidence `json:"ext,omitempty"`
}

// FaultRun is one scheduled fault and what its injector recorded.
type FaultRun struct {
	Spec   Fault         `json:"spec"`
	Events []chaos.Event `json:"events"`
}

// window returns when the faults were active: the first injection to the
// last undo (ok false when nothing was injected).
func (ev *Evidence) window() (from, to time.Time, ok bool) {
	for _, f := range ev.Faults {
		for _, e := range f.Events {
			switch e.Action {
			case "inject":
				if e.Err == "" && (from.IsZero() || e.At.Before(from)) {
					from = e.At
				}
			case "undo":
				if e.At.After(to) {
					to = e.At
				}
			}
		}
	}
	if from.IsZero() {
		return from, to, false
	}
	if to.Before(from) {
		to = time.Now()
	}
	return from, to, true
}

// nodes returns the node addresses of Final, sorted.
func (ev *Evidence) nodes() []string {
	out := make([]string, 0, len(ev.Final))
	for n := range ev.Final {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// view is the final state the checks judge: per order, the first node
// (in address order) that has it. replicas_agree checks the nodes agree.
func (ev *Evidence) view() map[string]*txswitch.Order {
	out := map[string]*txswitch.Order{}
	for _, n := range ev.nodes() {
		for id, o := range ev.Final[n] {
			if o != nil && out[id] == nil {
				out[id] = o
			}
		}
	}
	return out
}

// payments indexes the view's payments by id.
func (ev *Evidence) payments() map[string]*txswitch.Payment {
	out := map[string]*txswitch.Payment{}
	for _, o := range ev.view() {
		for i := range o.Payments {
			out[o.Payments[i].ID] = &o.Payments[i]
		}
	}
	return out
}

// ackedPayments returns the payment bodies of acknowledged writes that
// answer with a payment (create_payment, capture, cancel, review), in
// call order.
func (ev *Evidence) ackedPayments() []ackedPayment {
	var out []ackedPayment
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if !c.Acked() || c.Method == "GET" {
			continue
		}
		switch c.Op {
		case "create_payment", "capture", "cancel", "review":
			var p txswitch.Payment
			if json.Unmarshal(c.Body, &p) == nil && p.ID != "" {
				out = append(out, ackedPayment{call: c, p: p})
			}
		}
	}
	return out
}

type ackedPayment struct {
	call *Call
	p    txswitch.Payment
}

// orderIDs lists every order the client knows of: acknowledged creates
// and targets of later requests.
func orderIDs(calls []Call) []string {
	seen := map[string]bool{}
	for i := range calls {
		c := &calls[i]
		if c.Op == "create_order" && c.Acked() {
			var o txswitch.Order
			if json.Unmarshal(c.Body, &o) == nil && o.ID != "" {
				seen[o.ID] = true
			}
		}
		if c.Op == "create_payment" && c.Acked() && c.Target != "" {
			seen[c.Target] = true
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
