package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
)

// AnyMethod is the Behaviour.Methods key used for methods without an entry
// of their own.
const AnyMethod = "*"

// Outage modes.
const (
	// OutageRefuse stops listening: clients get "connection refused" (and
	// connections in flight are closed). The control endpoint is then
	// unreachable too, so over HTTP a refuse outage needs ForMillis.
	OutageRefuse = "refuse"
	// OutageUnavailable answers every request (but the control endpoint)
	// with 503 and X-Processed: false, before processing anything.
	OutageUnavailable = "unavailable"
)

// Bounds on behaviour values, so a typo cannot stall a test run for hours.
const (
	maxMillis      = 10 * 60 * 1000
	maxDuplicates  = 10
	maxMethods     = 64
	maxRules       = 64
	defaultStallMs = 30_000
)

// Behaviour is how the simulated PSP misbehaves. The zero value is a
// perfect PSP except for BuiltinDeclineRules. Setting a Behaviour replaces
// the previous one wholesale; DELETE /control/behaviour (or
// Server.ResetBehaviour) goes back to the zero value.
type Behaviour struct {
	// Methods maps a payment method (txswitch.ProviderRequest.Method) to its
	// behaviour; AnyMethod ("*") covers the others. A method's entry
	// replaces the "*" entry, it is not merged with it.
	Methods map[string]MethodBehaviour `json:"methods,omitempty"`
	// Outage, when set, is server-wide.
	Outage *Outage `json:"outage,omitempty"`
	// DeclineRules decline authorizations whose amount matches, in order,
	// after BuiltinDeclineRules (unless DisableBuiltinDeclines).
	DeclineRules           []DeclineRule `json:"decline_rules,omitempty"`
	DisableBuiltinDeclines bool          `json:"disable_builtin_declines,omitempty"`
}

// Outage is a full outage of the PSP.
type Outage struct {
	Mode string `json:"mode"` // OutageRefuse or OutageUnavailable
	// ForMillis ends the outage automatically; 0 lasts until the behaviour
	// is reset or replaced (not allowed for refuse over HTTP).
	ForMillis int64 `json:"for_ms,omitempty"`
}

// MethodBehaviour is the behaviour for one payment method.
type MethodBehaviour struct {
	// Ops limits latency and faults to these operations; empty means every
	// money-moving op (authorize, capture, refund, cancel). Status inquiries
	// are only affected when listed, so a test can break payments while
	// in-doubt resolution still works.
	Ops     []txswitch.ProviderOp `json:"ops,omitempty"`
	Latency Latency               `json:"latency,omitzero"`
	// ErrorRate is the probability of a 503 with X-Processed: false, answered
	// before processing.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// Unavailable answers every affected request that way.
	Unavailable bool `json:"unavailable,omitempty"`
	// ChargeThenTimeoutRate is the probability of processing the request
	// (the ledger records it) and then stalling until the client gives up or
	// StallMillis (default 30s) pass, whichever is first.
	ChargeThenTimeoutRate float64 `json:"charge_then_timeout_rate,omitempty"`
	StallMillis           int64   `json:"stall_ms,omitempty"`
	// MalformedRate is the probability of processing the request and then
	// answering 200 with garbled JSON.
	MalformedRate float64 `json:"malformed_rate,omitempty"`
	// Async makes authorizations of this method redirect-style: pending with
	// a redirect_url, completed later by the simulated bank.
	Async *Async `json:"async,omitempty"`
}

// Latency is the delay before the PSP acts on a request. Set at most one
// of: FixedMillis; MinMillis/MaxMillis (uniform); MeanMillis/StdDevMillis
// (normal, clamped at 0).
type Latency struct {
	FixedMillis  int64   `json:"fixed_ms,omitempty"`
	MinMillis    int64   `json:"min_ms,omitempty"`
	MaxMillis    int64   `json:"max_ms,omitempty"`
	MeanMillis   float64 `json:"mean_ms,omitempty"`
	StdDevMillis float64 `json:"stddev_ms,omitempty"`
}

// Async configures asynchronous completion of redirect methods.
type Async struct {
	// CompleteAfterMillis is when the simulated bank completes a pending
	// authorization (approved, or declined by a decline rule).
	CompleteAfterMillis int64 `json:"complete_after_ms"`
	// NotifyDelayMillis delays the notification after completion (slow
	// notifications).
	NotifyDelayMillis int64 `json:"notify_delay_ms,omitempty"`
	// Duplicates is how many extra copies of each notification are sent
	// (same notification_id), because real PSPs do and the switch must
	// deduplicate.
	Duplicates int `json:"duplicates,omitempty"`
}

// DeclineRule declines authorizations whose amount value, in decimal, ends
// with AmountSuffix (and whose method is Method, when set).
type DeclineRule struct {
	AmountSuffix string `json:"amount_suffix"`
	Method       string `json:"method,omitempty"`
	Code         string `json:"code"`
}

// BuiltinDeclineRules are the sandbox "magic amounts" of the simulated PSP.
var BuiltinDeclineRules = []DeclineRule{
	{AmountSuffix: "05", Code: "do_not_honor"},
	{AmountSuffix: "51", Code: "insufficient_funds"},
}

// Validate checks every value against the documented bounds.
func (b Behaviour) Validate() error {
	if len(b.Methods) > maxMethods {
		return fmt.Errorf("more than %d method entries", maxMethods)
	}
	for m, mb := range b.Methods {
		if err := mb.validate(); err != nil {
			return fmt.Errorf("methods[%q]: %w", m, err)
		}
	}
	if o := b.Outage; o != nil {
		if o.Mode != OutageRefuse && o.Mode != OutageUnavailable {
			return fmt.Errorf("outage.mode must be %q or %q", OutageRefuse, OutageUnavailable)
		}
		if o.ForMillis < 0 || o.ForMillis > maxMillis {
			return fmt.Errorf("outage.for_ms must be within [0,%d]", maxMillis)
		}
	}
	if len(b.DeclineRules) > maxRules {
		return fmt.Errorf("more than %d decline rules", maxRules)
	}
	for i, r := range b.DeclineRules {
		if r.AmountSuffix == "" || strings.Trim(r.AmountSuffix, "0123456789") != "" {
			return fmt.Errorf("decline_rules[%d].amount_suffix must be decimal digits", i)
		}
		if r.Code == "" {
			return fmt.Errorf("decline_rules[%d].code is required", i)
		}
	}
	return nil
}

func (mb MethodBehaviour) validate() error {
	for _, op := range mb.Ops {
		if !wire.IsMoneyOp(op) && op != txswitch.OpStatus {
			return fmt.Errorf("unknown op %q", op)
		}
	}
	for name, r := range map[string]float64{"error_rate": mb.ErrorRate, "charge_then_timeout_rate": mb.ChargeThenTimeoutRate, "malformed_rate": mb.MalformedRate} {
		if r < 0 || r > 1 || math.IsNaN(r) {
			return fmt.Errorf("%s must be within [0,1]", name)
		}
	}
	if mb.StallMillis < 0 || mb.StallMillis > maxMillis {
		return fmt.Errorf("stall_ms must be within [0,%d]", maxMillis)
	}
	l := mb.Latency
	kinds := 0
	if l.FixedMillis != 0 {
		kinds++
	}
	if l.MinMillis != 0 || l.MaxMillis != 0 {
		kinds++
		if l.MinMillis < 0 || l.MaxMillis < l.MinMillis {
			return fmt.Errorf("latency needs 0 <= min_ms <= max_ms")
		}
	}
	if l.MeanMillis != 0 || l.StdDevMillis != 0 {
		kinds++
		if l.MeanMillis < 0 || l.StdDevMillis < 0 || math.IsNaN(l.MeanMillis) || math.IsNaN(l.StdDevMillis) || l.MeanMillis+6*l.StdDevMillis > maxMillis {
			return fmt.Errorf("latency needs mean_ms >= 0, stddev_ms >= 0, mean+6*stddev <= %d", maxMillis)
		}
	}
	if kinds > 1 {
		return fmt.Errorf("latency: set only one of fixed, min/max, mean/stddev")
	}
	if l.FixedMillis < 0 || l.FixedMillis > maxMillis || l.MaxMillis > maxMillis {
		return fmt.Errorf("latency must be within [0,%d] ms", maxMillis)
	}
	if a := mb.Async; a != nil {
		if a.CompleteAfterMillis < 0 || a.CompleteAfterMillis > maxMillis || a.NotifyDelayMillis < 0 || a.NotifyDelayMillis > maxMillis {
			return fmt.Errorf("async delays must be within [0,%d] ms", maxMillis)
		}
		if a.Duplicates < 0 || a.Duplicates > maxDuplicates {
			return fmt.Errorf("async.duplicates must be within [0,%d]", maxDuplicates)
		}
	}
	return nil
}

// forMethod returns the behaviour for method and whether its latency and
// faults apply to op.
func (b Behaviour) forMethod(method string, op txswitch.ProviderOp) (MethodBehaviour, bool) {
	mb, ok := b.Methods[method]
	if !ok {
		mb = b.Methods[AnyMethod]
	}
	if len(mb.Ops) == 0 {
		return mb, wire.IsMoneyOp(op)
	}
	for _, o := range mb.Ops {
		if o == op {
			return mb, true
		}
	}
	return mb, false
}

// declineCode returns the code of the first decline rule matching req, or
// "".
func (b Behaviour) declineCode(req txswitch.ProviderRequest) string {
	amount := strconv.FormatInt(req.Amount.Value, 10)
	match := func(rules []DeclineRule) string {
		for _, r := range rules {
			if (r.Method == "" || r.Method == req.Method) && strings.HasSuffix(amount, r.AmountSuffix) {
				return r.Code
			}
		}
		return ""
	}
	if !b.DisableBuiltinDeclines {
		if c := match(BuiltinDeclineRules); c != "" {
			return c
		}
	}
	return match(b.DeclineRules)
}

// plan is what the PSP decided to do with one request; drawn in one go
// under the server's lock so a seed gives one sequence of plans.
type plan struct {
	latency           time.Duration
	unavailable       bool
	chargeThenTimeout bool
	stall             time.Duration
	malformed         bool
}

func (mb MethodBehaviour) draw(rng *rand.Rand) plan {
	var p plan
	l := mb.Latency
	switch {
	case l.FixedMillis > 0:
		p.latency = ms(float64(l.FixedMillis))
	case l.MaxMillis > 0:
		p.latency = ms(float64(l.MinMillis + rng.Int64N(l.MaxMillis-l.MinMillis+1)))
	case l.MeanMillis > 0 || l.StdDevMillis > 0:
		p.latency = ms(max(0, l.MeanMillis+rng.NormFloat64()*l.StdDevMillis))
	}
	p.unavailable = mb.Unavailable || (mb.ErrorRate > 0 && rng.Float64() < mb.ErrorRate)
	p.chargeThenTimeout = mb.ChargeThenTimeoutRate > 0 && rng.Float64() < mb.ChargeThenTimeoutRate
	p.stall = ms(float64(mb.StallMillis))
	if p.stall == 0 {
		p.stall = defaultStallMs * time.Millisecond
	}
	p.malformed = mb.MalformedRate > 0 && rng.Float64() < mb.MalformedRate
	return p
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
