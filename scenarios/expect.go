package scenarios

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// name is the expectation's registry name.
func (e Expect) name() string {
	switch {
	case e.BreakerOpen != nil:
		return "breaker_open"
	case e.LeaderChange != nil:
		return "leader_change"
	case e.Availability != nil:
		return "availability"
	case e.SawStatus != nil:
		return "saw_status"
	case e.TimelineEvent != nil:
		return "timeline_event"
	case e.ProviderUsed != nil:
		return "provider_used"
	case e.FinalStatus != nil:
		return "final_status"
	case e.MinAcked != nil:
		return "min_acked"
	case e.Rejected != nil:
		return "rejected"
	case e.MemberCount != nil:
		return "members"
	case e.MethodHidden != nil:
		return "method_hidden"
	case e.OrderStatus != nil:
		return "order_status"
	case e.MethodsOffered != nil:
		return "methods_offered"
	case e.Surcharge != nil:
		return "surcharge"
	case e.Latency != nil:
		return "latency"
	}
	return "unknown"
}

// check judges the expectation on the evidence.
func (e Expect) check(ev *Evidence) CheckResult {
	switch {
	case e.BreakerOpen != nil:
		return expectBreakerOpen(ev, *e.BreakerOpen)
	case e.LeaderChange != nil:
		return expectLeaderChange(ev, *e.LeaderChange)
	case e.Availability != nil:
		return expectAvailability(ev, *e.Availability)
	case e.SawStatus != nil:
		return expectSawStatus(ev, *e.SawStatus)
	case e.TimelineEvent != nil:
		return expectTimeline(ev, *e.TimelineEvent)
	case e.ProviderUsed != nil:
		return expectProviderUsed(ev, *e.ProviderUsed)
	case e.FinalStatus != nil:
		return expectFinal(ev, *e.FinalStatus)
	case e.MinAcked != nil:
		return expectMinAcked(ev, *e.MinAcked)
	case e.Rejected != nil:
		return expectRejected(ev, *e.Rejected)
	case e.MemberCount != nil:
		return expectMembers(ev, *e.MemberCount)
	case e.MethodHidden != nil:
		return expectHidden(ev, *e.MethodHidden)
	case e.OrderStatus != nil:
		return expectOrderStatus(ev, *e.OrderStatus)
	case e.MethodsOffered != nil:
		return expectMethods(ev, *e.MethodsOffered)
	case e.Surcharge != nil:
		return expectSurcharge(ev, *e.Surcharge)
	case e.Latency != nil:
		return expectLatency(ev, *e.Latency)
	}
	return result("unknown", "", []string{"unknown expectation"})
}

// callOps are the operations the flows name their calls by (latency's op).
var callOps = []string{"create_order", "create_payment", "capture", "refund", "cancel", "review",
	"get_order", "get_payment", "get_methods"}

// minLatencyCalls is the fewest calls a latency expectation judges unless
// it says otherwise (min_calls): a 99th percentile of a handful of calls
// says little, and of none nothing.
const minLatencyCalls = 20

// latencyP99 is the duration the 99th percentile of took (sorted) is
// judged by: the slowest ceil(n/100) calls are left out, so at least one,
// and of fewer than 100 calls all but the slowest count. (Nearest rank
// would make the p99 of up to 100 calls their maximum: one stall of a
// shared CI machine would fail a scenario of 60 calls.)
func latencyP99(took []time.Duration) time.Duration {
	n := len(took)
	out := (n + 99) / 100
	return took[max(0, n-1-out)]
}

func expectLatency(ev *Evidence, x ExpectLatency) CheckResult {
	name := "latency"
	var took []time.Duration
	var slowest *Call
	retried := 0
	for i := range ev.Calls {
		c := &ev.Calls[i]
		// A call with no node was never sent: not the switch's time.
		if (x.Op != "" && c.Op != x.Op) || !ev.inWindow(x.Window, c.Start) || c.Node == "" {
			continue
		}
		if c.Attempt > 0 {
			retried++
		}
		took = append(took, c.End.Sub(c.Start))
		if slowest == nil || c.End.Sub(c.Start) > slowest.End.Sub(slowest.Start) {
			slowest = c
		}
	}
	what := "calls"
	if x.Op != "" {
		what = x.Op + " calls"
	}
	least := x.MinCalls
	if least <= 0 {
		least = minLatencyCalls
	}
	if len(took) < least || len(took) == 0 {
		return result(name, "", []string{fmt.Sprintf("%d %s in window %s, want at least %d to judge a 99th percentile", len(took), what, x.Window, least)})
	}
	slices.Sort(took)
	p50, p99, longest := took[(len(took)-1)/2], latencyP99(took), took[len(took)-1]
	note := fmt.Sprintf("%d %s in window %s (%d of them retries): p50 %v, p99 %v, max %v (%s %s on %s, status %d)", len(took), what, x.Window, retried,
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), longest.Round(time.Millisecond),
		slowest.Method, slowest.Path, slowest.Node, slowest.Status)
	var v []string
	if p99 > x.P99.D() {
		v = append(v, fmt.Sprintf("p99 %v over %v", p99.Round(time.Millisecond), x.P99.D()))
	}
	if x.Max > 0 && longest > x.Max.D() {
		v = append(v, fmt.Sprintf("slowest call %v over %v", longest.Round(time.Millisecond), x.Max.D()))
	}
	return result(name, note, v)
}

// faultStart is when the first fault (on target, if any fault names it)
// was injected.
func (ev *Evidence) faultStart(target string) (time.Time, bool) {
	var first time.Time
	for pass := 0; pass < 2; pass++ {
		for _, f := range ev.Faults {
			if pass == 0 && f.Spec.Target != target {
				continue
			}
			for _, e := range f.Events {
				if e.Action == "inject" && e.Err == "" && (first.IsZero() || e.At.Before(first)) {
					first = e.At
				}
			}
		}
		if !first.IsZero() {
			return first, true
		}
	}
	return first, false
}

func expectBreakerOpen(ev *Evidence, x ExpectBreaker) CheckResult {
	name := "breaker_open"
	t0, ok := ev.faultStart(x.Provider)
	if !ok {
		return result(name, "", []string{"no fault was injected to time the breaker from"})
	}
	for _, o := range ev.Observations {
		if o.At.Before(t0) || o.At.After(t0.Add(x.Within.D())) {
			continue
		}
		for _, b := range o.Open {
			if strings.HasPrefix(b, x.Provider+"/") {
				return result(name, fmt.Sprintf("%s open %v after the fault", b, o.At.Sub(t0).Round(time.Millisecond)), nil)
			}
		}
	}
	return result(name, "", []string{fmt.Sprintf("no node reported a breaker of %s open within %v of the fault (%d observations)", x.Provider, x.Within.D(), len(ev.Observations))})
}

func expectLeaderChange(ev *Evidence, x ExpectWithin) CheckResult {
	name := "leader_change"
	t0, ok := ev.faultStart("leader")
	if !ok {
		return result(name, "", []string{"no fault was injected"})
	}
	var before Observation
	for _, o := range ev.Observations {
		if o.At.Before(t0) && o.Leader != 0 {
			before = o
		}
	}
	if before.Leader == 0 {
		return result(name, "", []string{"no leader observed before the fault"})
	}
	for _, o := range ev.Observations {
		if !o.At.After(t0) || o.At.After(t0.Add(x.Within.D())) {
			continue
		}
		if o.Leader != 0 && (o.Leader != before.Leader || o.Term > before.Term) {
			return result(name, fmt.Sprintf("leader %d (term %d) -> %d (term %d) after %v", before.Leader, before.Term, o.Leader, o.Term, o.At.Sub(t0).Round(time.Millisecond)), nil)
		}
	}
	return result(name, "", []string{fmt.Sprintf("no new leader or term within %v of the fault (leader %d at term %d before)", x.Within.D(), before.Leader, before.Term)})
}

// inWindow reports whether t falls in the expectation's window.
func (ev *Evidence) inWindow(window string, t time.Time) bool {
	if window != "during_faults" {
		return true
	}
	from, to, ok := ev.window()
	return ok && !t.Before(from) && !t.After(to)
}

func expectAvailability(ev *Evidence, x ExpectAvailability) CheckResult {
	name := "availability"
	ok, total, declined := 0, 0, 0
	var failed []string
	for _, r := range ev.Runs {
		if !r.Pays || !ev.inWindow(x.Window, r.Start) {
			continue
		}
		switch r.Outcome {
		case "declined":
			declined++
			continue
		case "succeeded":
			ok++
		default:
			if len(failed) < 5 {
				failed = append(failed, fmt.Sprintf("flow %d (%s, order %q)", r.ID, r.Flow, r.OrderID))
			}
		}
		total++
	}
	if total == 0 {
		return result(name, "", []string{fmt.Sprintf("no paying flow started in window %s: nothing to judge", x.Window)})
	}
	share := float64(ok) / float64(total)
	note := fmt.Sprintf("%d/%d = %.3f succeeded in window %s (%d declines excluded)", ok, total, share, x.Window, declined)
	if share < x.Min {
		return result(name, note, []string{fmt.Sprintf("availability %.3f < %.3f (%d/%d); failed e.g. %s", share, x.Min, ok, total, strings.Join(failed, ", "))})
	}
	return result(name, note, nil)
}

func expectSawStatus(ev *Evidence, x ExpectStatus) CheckResult {
	name := "saw_status"
	pays := ev.payments()
	seen := map[string]bool{}
	var v []string
	for _, a := range ev.ackedPayments() {
		if a.p.Status != x.Status || seen[a.p.ID] {
			continue
		}
		seen[a.p.ID] = true
		if len(x.ResolvedTo) > 0 {
			p := pays[a.p.ID]
			switch {
			case p == nil:
				v = append(v, fmt.Sprintf("payment %s acknowledged %s is missing at the end", a.p.ID, x.Status))
			case !slices.Contains(x.ResolvedTo, p.Status):
				v = append(v, fmt.Sprintf("payment %s acknowledged %s ended %s, want one of %v", a.p.ID, x.Status, p.Status, x.ResolvedTo))
			}
		}
	}
	if len(seen) < x.Min {
		v = append(v, fmt.Sprintf("%d payments acknowledged %s, want at least %d", len(seen), x.Status, x.Min))
	}
	return result(name, fmt.Sprintf("%d payments acknowledged %s", len(seen), x.Status), v)
}

// timelineOrders returns the orders an ExpectTimeline is about.
func timelineOrders(ev *Evidence, x ExpectTimeline) []string {
	set := map[string]bool{}
	if x.Flow != "" {
		for _, r := range ev.Runs {
			if r.Flow == x.Flow && r.OrderID != "" {
				set[r.OrderID] = true
			}
		}
	}
	if x.Status != "" {
		for _, a := range ev.ackedPayments() {
			if a.p.Status == x.Status {
				set[a.p.OrderID] = true
			}
		}
	}
	if x.Flow == "" && x.Status == "" {
		for id := range ev.view() {
			set[id] = true
		}
	}
	return sortedKeys(set)
}

func expectTimeline(ev *Evidence, x ExpectTimeline) CheckResult {
	name := "timeline_event"
	orders := timelineOrders(ev, x)
	have := 0
	var missing []string
	for _, id := range orders {
		found := false
		for _, e := range ev.Timelines[id] {
			found = found || e.Type == x.Type
		}
		if found {
			have++
		} else if len(missing) < 5 {
			missing = append(missing, id)
		}
	}
	var v []string
	if have < x.Min {
		v = append(v, fmt.Sprintf("%d of %d orders have a %q timeline event, want at least %d (without: %v)", have, len(orders), x.Type, x.Min, missing))
	}
	// Orders picked by status were affected by the fault: every one of
	// them must show it.
	if x.Status != "" && have < len(orders) {
		v = append(v, fmt.Sprintf("orders with a payment acknowledged %s lack a %q event: %v", x.Status, x.Type, missing))
	}
	return result(name, fmt.Sprintf("%d/%d orders have %q", have, len(orders), x.Type), v)
}

// usedAt lists the payments x.Provider's ledger holds an approved or
// pending (redirect) authorization for: the PSP took the payment,
// whatever the switch says about where it went.
func usedAt(ledger []sim.LedgerEntry) map[string]bool {
	out := map[string]bool{}
	for _, e := range ledger {
		if e.Op == txswitch.OpAuthorize && (e.Status == txswitch.OutcomeApproved || e.Status == txswitch.OutcomePending) {
			out[e.PaymentID] = true
		}
	}
	return out
}

func expectProviderUsed(ev *Evidence, x ExpectProvider) CheckResult {
	name := "provider_used"
	// Judged from the PSP's own ledger when the evidence holds the
	// ledgers (a run always does); from the switch's account otherwise.
	fromLedgers := len(ev.Ledgers) > 0
	used := usedAt(ev.Ledgers[x.Provider])
	pays := ev.payments()
	n := 0
	seen := map[string]bool{}
	for _, a := range ev.ackedPayments() {
		if a.call.Op != "create_payment" || seen[a.p.ID] || !ev.inWindow(x.Window, a.call.Start) {
			continue
		}
		seen[a.p.ID] = true
		if fromLedgers {
			if used[a.p.ID] {
				n++
			}
			continue
		}
		if p := pays[a.p.ID]; p != nil && p.Provider == x.Provider && p.Status != txswitch.PaymentDeclined && p.Status != txswitch.PaymentFailed {
			n++
		}
	}
	source := "the PSP's ledger"
	if !fromLedgers {
		source = "the switch's account (no ledgers in the evidence)"
	}
	var v []string
	if n < x.Min {
		v = append(v, fmt.Sprintf("%d payments (window %s) went through %s, want at least %d", n, x.Window, x.Provider, x.Min))
	}
	if x.Max != nil && n > *x.Max {
		v = append(v, fmt.Sprintf("%d payments (window %s) went through %s, want at most %d", n, x.Window, x.Provider, *x.Max))
	}
	return result(name, fmt.Sprintf("%d payments via %s in window %s, from %s", n, x.Provider, x.Window, source), v)
}

// expectFinal judges the final status of every payment of the flow's
// orders, except a creation the client never learned the outcome of that
// ended failed: a node stopped or cut off between recording the payment
// and answering, the switch resolved the provider call it could not prove
// (the PSP had not booked it) and failed the payment. That outcome is
// legal whatever the flow expects, since the client was told nothing and
// no money moved; the second part is read from the PSPs' ledgers, not
// from the switch. A creation answered 2xx, or refused definitively, or
// whose payment a PSP holds an approved charge for, is judged.
func expectFinal(ev *Evidence, x ExpectFinal) CheckResult {
	name := "final_status"
	view := ev.view()
	ledger := ledgerTotals(ev.Ledgers)
	acked := map[string]bool{}
	for _, a := range ev.ackedPayments() {
		if a.call.Op == "create_payment" {
			acked[a.p.ID] = true
		}
	}
	// The flow runs whose creation of a payment on an order went without a
	// definitive answer at least once.
	type flowOrder struct {
		flow  int
		order string
	}
	unanswered := map[flowOrder]bool{}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Op == "create_payment" && !c.Acked() && !definitiveRefusal(c) {
			unanswered[flowOrder{c.FlowID, c.Target}] = true
		}
	}
	var v []string
	n, inDoubt := 0, 0
	for _, r := range ev.Runs {
		if r.Flow != x.Flow || r.OrderID == "" || view[r.OrderID] == nil {
			continue
		}
		for _, p := range view[r.OrderID].Payments {
			lm := ledger[p.ID]
			charged := lm != nil && lm.charges > 0 && !lm.cancelled
			if p.Status == txswitch.PaymentFailed && !acked[p.ID] && !charged && unanswered[flowOrder{r.ID, r.OrderID}] {
				inDoubt++
				continue
			}
			n++
			if !slices.Contains(x.Statuses, p.Status) {
				v = append(v, fmt.Sprintf("payment %s of flow %s (order %s) ended %s, want one of %v", p.ID, x.Flow, r.OrderID, p.Status, x.Statuses))
			}
		}
	}
	if n == 0 {
		v = append(v, fmt.Sprintf("no payment of flow %s to judge", x.Flow))
	}
	note := fmt.Sprintf("%d payments of %s", n, x.Flow)
	if inDoubt > 0 {
		note += fmt.Sprintf("; %d created without an answer and failed (not judged)", inDoubt)
	}
	return result(name, note, v)
}

func expectMinAcked(ev *Evidence, x ExpectCount) CheckResult {
	name := "min_acked"
	n := 0
	seen := map[string]bool{}
	for _, a := range ev.ackedPayments() {
		if a.call.Op == "create_payment" && !seen[a.p.ID] && (x.Flow == "" || a.call.Flow == x.Flow) {
			seen[a.p.ID] = true
			n++
		}
	}
	if n < x.Min {
		return result(name, "", []string{fmt.Sprintf("%d payments acknowledged (flow %q), want at least %d", n, x.Flow, x.Min)})
	}
	return result(name, fmt.Sprintf("%d payments acknowledged", n), nil)
}

func expectRejected(ev *Evidence, x ExpectRejected) CheckResult {
	name := "rejected"
	n := 0
	var bad []string
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Status != x.Status {
			continue
		}
		n++
		// A refusal must say why in the API's error format.
		if errorCode(c.Body) == "" && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("call #%d %s: %d without an error code: %s", c.Seq, c.Op, c.Status, clip(c.Body)))
		}
	}
	v := bad
	if n < x.Min {
		v = append(v, fmt.Sprintf("%d requests answered %d, want at least %d", n, x.Status, x.Min))
	}
	return result(name, fmt.Sprintf("%d requests answered %d", n, x.Status), v)
}

func expectMembers(ev *Evidence, x ExpectMembers) CheckResult {
	name := "members"
	if ev.Members != x.Count {
		return result(name, "", []string{fmt.Sprintf("the cluster has %d members at the end, want %d", ev.Members, x.Count)})
	}
	return result(name, fmt.Sprintf("%d members", ev.Members), nil)
}

// orderOf decodes an order body (helper for tests and evidence).
func orderOf(b []byte) (txswitch.Order, bool) {
	var o txswitch.Order
	return o, json.Unmarshal(b, &o) == nil && o.ID != ""
}

func offers(body []byte, method string) (offered, ok bool) {
	var m txswitch.MethodsResponse
	if json.Unmarshal(body, &m) != nil {
		return false, false
	}
	for _, o := range m.Methods {
		if o.Method == method {
			return true, true
		}
	}
	return false, true
}

// allOpen reports whether observation o saw every provider's breaker for
// method open on some node.
func allOpen(o Observation, method string, providers []string) bool {
	for _, p := range providers {
		if !slices.Contains(o.Open, p+"/"+method) {
			return false
		}
	}
	return true
}

// openThroughout reports whether every provider's breaker for method was
// open on the leader for the whole time from observation a to b. Where
// both carry transition counts that is exact: one leader and term, every
// breaker open at both ends with the same mark (no transition between) (an open breaker
// goes half-open when its timeout passes, may admit a probe, and opens
// again, all between two samples: it rightly offers the method meanwhile).
// Without counts (an older release) it is the states at both ends.
func openThroughout(a, b Observation, method string, providers []string) bool {
	if a.LeaderOpen == nil || b.LeaderOpen == nil {
		return allOpen(a, method, providers) && allOpen(b, method, providers)
	}
	if a.Leader == 0 || a.Leader != b.Leader || a.Term != b.Term {
		return false
	}
	for _, p := range providers {
		ma, okA := a.LeaderOpen[p+"/"+method]
		mb, okB := b.LeaderOpen[p+"/"+method]
		if !okA || !okB || !ma.same(mb) {
			return false
		}
	}
	return true
}

func expectHidden(ev *Evidence, x ExpectHidden) CheckResult {
	name := "method_hidden"
	from, _, ok := ev.window()
	if !ok {
		return result(name, "", []string{"no fault was injected"})
	}
	// openAround: the breakers were open from the last observation before
	// t0 to the first after t1.
	openAround := func(t0, t1 time.Time) bool {
		var before, after *Observation
		for i := range ev.Observations {
			o := &ev.Observations[i]
			if !o.At.After(t0) {
				before = o
			}
			if after == nil && !o.At.Before(t1) {
				after = o
			}
		}
		return before != nil && after != nil && openThroughout(*before, *after, x.Method, x.Providers)
	}
	before, during := 0, 0
	var v []string
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Op != "get_methods" || c.Status != 200 {
			continue
		}
		offered, ok := offers(c.Body, x.Method)
		if !ok {
			continue
		}
		switch {
		case c.End.Before(from):
			if offered {
				before++
			}
		case openAround(c.Start, c.End):
			during++
			if offered {
				v = append(v, fmt.Sprintf("call #%d via %s at +%v offered %s while every breaker of it was open: %s", c.Seq, c.Node, c.Start.Sub(ev.Start).Round(time.Millisecond), x.Method, clip(c.Body)))
			}
		}
	}
	if before == 0 {
		v = append(v, fmt.Sprintf("no checkout before the fault offered %s: hiding it proves nothing", x.Method))
	}
	if during == 0 {
		v = append(v, fmt.Sprintf("no checkout happened while every breaker of %s was open: nothing to judge", x.Method))
	}
	return result(name, fmt.Sprintf("%s offered in %d checkouts before the fault; %d checkouts judged while its breakers were open", x.Method, before, during), v)
}

// ExpectMethods: every checkout (GET methods) of Flow answered in Window
// offered each of Offered and none of Absent; an Absent method with a
// reason must be listed as excluded for that reason (the API says why).
// after_faults judges checkouts that started After past the last undo
// (a method comes back once its providers do).
type ExpectMethods struct {
	Flow    string            `yaml:"flow"`
	Offered []string          `yaml:"offered"`
	Absent  map[string]string `yaml:"absent"`
	Window  string            `yaml:"window"` // whole | during_faults | after_faults
	After   Duration          `yaml:"after"`
}

// ExpectSurcharge: every payment of Flow by Method carries the surcharge
// the method's configuration (Fixed minor units, or FixedByCurrency's for
// the payment's currency, plus BasisPoints of the amount) gives, and every
// offer of Method at those flows' checkouts shows the same; Window
// during_faults judges only payments and checkouts made while the faults
// (a configuration change) were in force.
type ExpectSurcharge struct {
	Flow            string           `yaml:"flow"`
	Method          string           `yaml:"method"`
	Fixed           int64            `yaml:"fixed"`
	FixedByCurrency map[string]int64 `yaml:"fixed_by_currency"`
	BasisPoints     int64            `yaml:"basis_points"`
	Window          string           `yaml:"window"`
}

// validateBreadth validates the breadth expectations.
func (e Expect) validateBreadth(s *Scenario, window func(*string) error, status func(string) error, flow func(string) error) error {
	switch {
	case e.OrderStatus != nil:
		if e.OrderStatus.Flow == "" || len(e.OrderStatus.Statuses) == 0 {
			return fmt.Errorf("order_status: flow and statuses required")
		}
		for _, st := range e.OrderStatus.Statuses {
			if !slices.Contains(orderStatuses, st) {
				return fmt.Errorf("order_status: unknown order status %q", st)
			}
		}
		return flow(e.OrderStatus.Flow)
	case e.MethodsOffered != nil:
		x := e.MethodsOffered
		if x.Flow == "" || len(x.Offered)+len(x.Absent) == 0 {
			return fmt.Errorf("methods_offered: flow and offered or absent methods required")
		}
		if _, ok := s.Traffic.Mix[x.Flow]; !ok {
			return fmt.Errorf("methods_offered: flow %q is not in the mix", x.Flow)
		}
		for m, r := range x.Absent {
			if slices.Contains(x.Offered, m) {
				return fmt.Errorf("methods_offered: %s both offered and absent", m)
			}
			if r != "" && !slices.Contains(exclusionReasons, r) {
				return fmt.Errorf("methods_offered: unknown exclusion reason %q (known: %v)", r, exclusionReasons)
			}
		}
		if x.Window == "after_faults" {
			if len(s.Faults) == 0 {
				return fmt.Errorf("methods_offered: window after_faults without faults")
			}
			return nil
		}
		if x.After != 0 {
			return fmt.Errorf("methods_offered: after only applies to window after_faults")
		}
		return window(&x.Window)
	case e.Surcharge != nil:
		x := e.Surcharge
		if x.Flow == "" || x.Method == "" || x.Fixed < 0 || x.BasisPoints < 0 {
			return fmt.Errorf("surcharge: flow, method and non-negative fixed/basis_points required")
		}
		if len(x.FixedByCurrency) > 0 && x.Fixed != 0 {
			return fmt.Errorf("surcharge: fixed or fixed_by_currency, not both")
		}
		for c, v := range x.FixedByCurrency {
			if _, ok := txswitch.CurrencyExponent(c); !ok || v < 0 {
				return fmt.Errorf("surcharge: fixed_by_currency %s: %d (an ISO 4217 code and a non-negative amount)", c, v)
			}
		}
		if err := flow(x.Flow); err != nil {
			return err
		}
		return window(&x.Window)
	}
	return nil
}

var orderStatuses = []string{txswitch.OrderCreated, txswitch.OrderPending, txswitch.OrderHeldForReview, txswitch.OrderAuthorized,
	txswitch.OrderPaid, txswitch.OrderPartiallyRefunded, txswitch.OrderRefunded, txswitch.OrderFailed, txswitch.OrderCancelled, txswitch.OrderExpired}

// exclusionReasons are the documented MethodExclusion reasons.
var exclusionReasons = []string{"disabled", "country", "currency", "channel", "amount_below_min", "amount_above_max", "no_route", "all_providers_down"}

// mixChecksOut reports whether the mix has a flow that asks for methods.
func mixChecksOut(mix map[string]float64) bool {
	for f := range mix {
		if f == "checkout_methods" || strings.HasPrefix(f, "methods_") {
			return true
		}
	}
	return false
}

func expectOrderStatus(ev *Evidence, x ExpectFinal) CheckResult {
	name := "order_status"
	view := ev.view()
	var v []string
	n := 0
	for _, r := range ev.Runs {
		o := view[r.OrderID]
		if r.Flow != x.Flow || o == nil {
			continue
		}
		n++
		if !slices.Contains(x.Statuses, o.Status) && len(v) < 10 {
			v = append(v, fmt.Sprintf("order %s of flow %s ended %s (paid %v, refunded %v), want one of %v", o.ID, x.Flow, o.Status,
				txswitch.FormatMoney(o.Captured), txswitch.FormatMoney(o.Refunded), x.Statuses))
		}
	}
	if n == 0 {
		v = append(v, fmt.Sprintf("no order of flow %s to judge", x.Flow))
	}
	return result(name, fmt.Sprintf("%d orders of %s", n, x.Flow), v)
}

// lastUndo is when the last fault was undone.
func (ev *Evidence) lastUndo() (time.Time, bool) {
	var to time.Time
	for _, f := range ev.Faults {
		for _, e := range f.Events {
			if e.Action == "undo" && e.At.After(to) {
				to = e.At
			}
		}
	}
	return to, !to.IsZero()
}

func expectMethods(ev *Evidence, x ExpectMethods) CheckResult {
	name := "methods_offered"
	judge := func(c *Call) bool { return ev.inWindow(x.Window, c.Start) && ev.inWindow(x.Window, c.End) }
	if x.Window == "after_faults" {
		to, ok := ev.lastUndo()
		if !ok {
			return result(name, "", []string{"no fault was undone: nothing to judge after it"})
		}
		from := to.Add(x.After.D())
		judge = func(c *Call) bool { return !c.Start.Before(from) }
	}
	n := 0
	var v []string
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Op != "get_methods" || c.Flow != x.Flow || c.Status != 200 || !judge(c) {
			continue
		}
		var m txswitch.MethodsResponse
		if json.Unmarshal(c.Body, &m) != nil {
			v = append(v, fmt.Sprintf("call #%d: unreadable methods answer %s", c.Seq, clip(c.Body)))
			continue
		}
		n++
		offered := map[string]bool{}
		for _, o := range m.Methods {
			offered[o.Method] = true
		}
		why := map[string]string{}
		for _, e := range m.Excluded {
			why[e.Method] = e.Reason
		}
		for _, want := range x.Offered {
			if !offered[want] && len(v) < 10 {
				v = append(v, fmt.Sprintf("call #%d via %s did not offer %s (excluded: %q): %s", c.Seq, c.Node, want, why[want], clip(c.Body)))
			}
		}
		for _, m := range sortedKeys(x.Absent) {
			reason := x.Absent[m]
			switch {
			case offered[m]:
				if len(v) < 10 {
					v = append(v, fmt.Sprintf("call #%d via %s offered %s, which must not be offered: %s", c.Seq, c.Node, m, clip(c.Body)))
				}
			case reason != "" && why[m] != reason:
				if len(v) < 10 {
					v = append(v, fmt.Sprintf("call #%d via %s excluded %s for %q, want %q", c.Seq, c.Node, m, why[m], reason))
				}
			}
		}
	}
	if n == 0 {
		v = append(v, fmt.Sprintf("no checkout of flow %s answered in window %s: nothing to judge", x.Flow, x.Window))
	}
	return result(name, fmt.Sprintf("%d checkouts of %s judged (window %s)", n, x.Flow, x.Window), v)
}

// want is the surcharge the expectation gives amount: the fixed part for
// its currency plus BasisPoints of it, rounded half up. It is worked out
// here, not with the switch's own txswitch.Surcharge, so that a wrong
// formula or currency lookup in the switch shows (the scenarios' amounts
// are far too small to overflow).
func (x ExpectSurcharge) want(amount txswitch.Money) txswitch.Money {
	fixed := x.Fixed
	if len(x.FixedByCurrency) > 0 {
		fixed = x.FixedByCurrency[amount.Currency]
	}
	return txswitch.Money{Value: fixed + (amount.Value*x.BasisPoints+5_000)/10_000, Currency: amount.Currency}
}

func expectSurcharge(ev *Evidence, x ExpectSurcharge) CheckResult {
	name := "surcharge"
	pays, view := ev.payments(), ev.view()
	var v []string
	nPay, nOffer := 0, 0
	seen := map[string]bool{}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Flow != x.Flow || c.Status != 200 && c.Status != 201 || !ev.inWindow(x.Window, c.Start) || !ev.inWindow(x.Window, c.End) {
			continue
		}
		switch c.Op {
		case "create_payment":
			var ack txswitch.Payment
			if json.Unmarshal(c.Body, &ack) != nil || ack.Method != x.Method || seen[ack.ID] || pays[ack.ID] == nil {
				continue
			}
			seen[ack.ID] = true
			p := pays[ack.ID]
			nPay++
			want := x.want(p.Amount)
			got := txswitch.Money{Currency: p.Amount.Currency}
			if p.Surcharge != nil {
				got = *p.Surcharge
			}
			if got.Value != want.Value && len(v) < 10 {
				v = append(v, fmt.Sprintf("payment %s (%s of %s) carries surcharge %s, want %s", p.ID, x.Method, txswitch.FormatMoney(p.Amount),
					txswitch.FormatMoney(got), txswitch.FormatMoney(want)))
			}
		case "get_methods":
			var m txswitch.MethodsResponse
			if json.Unmarshal(c.Body, &m) != nil {
				continue
			}
			o := view[c.Target]
			for _, off := range m.Methods {
				if off.Method != x.Method || o == nil {
					continue
				}
				nOffer++
				if want := x.want(o.Amount); off.Surcharge.Value != want.Value && len(v) < 10 {
					v = append(v, fmt.Sprintf("call #%d offered %s on order %s (%s) with surcharge %s, want %s", c.Seq, x.Method, o.ID,
						txswitch.FormatMoney(o.Amount), txswitch.FormatMoney(off.Surcharge), txswitch.FormatMoney(want)))
				}
			}
		}
	}
	if nPay == 0 {
		v = append(v, fmt.Sprintf("no %s payment of flow %s in window %s to judge", x.Method, x.Flow, x.Window))
	}
	return result(name, fmt.Sprintf("%d %s payments and %d offers judged", nPay, x.Method, nOffer), v)
}
