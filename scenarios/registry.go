package scenarios

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/txswitch/txswitch/chaos"
	txswitch "github.com/txswitch/txswitch/switch"
)

// The closed registries: scenario files may only name what is here.

// Tags a scenario may carry.
var knownTags = []string{"smoke", "regression", "chaos", "upgrade", "mutant", "flow", "provider", "node",
	"partition", "idempotency", "bad_input", "redirect", "load", "slow", "process"}

// shape is a traffic shape: the arrival rate factor over the run.
type shape struct {
	doc    string
	factor func(frac float64) float64
	// concurrentRetries sends each write this many extra times at once
	// with the same idempotency key (a retry storm).
	concurrentRetries int
}

var shapes = map[string]shape{
	"steady": {doc: "constant arrival rate", factor: func(float64) float64 { return 1 }},
	"ramp":   {doc: "rate rises linearly from 20% to 100%", factor: func(f float64) float64 { return 0.2 + 0.8*f }},
	"spike": {doc: "base rate with 4x for the middle fifth", factor: func(f float64) float64 {
		if f >= 0.4 && f < 0.6 {
			return 4
		}
		return 1
	}},
	"wave":        {doc: "rate oscillates between 25% and 175%", factor: func(f float64) float64 { return 1 + 0.75*math.Sin(2*math.Pi*2*f) }},
	"retry_storm": {doc: "steady, and every write is sent 3 times at once with one idempotency key", factor: func(float64) float64 { return 1 }, concurrentRetries: 2},
}

// targetKind is what a fault's target names.
type targetKind int

const (
	targetProvider targetKind = iota
	targetNode
	targetPartition
	targetNone
	targetNodeOrAll // a node target, or "all" (every running node)
)

// faultDef is a fault kind: what its target is, which parameters it
// takes, and how to build the injector.
type faultDef struct {
	doc    string
	target targetKind
	params []string // of Fault's kind-specific fields
	// mutant faults only belong in scenarios that expect_fail.
	mutant bool
	build  func(env *env, f Fault) (chaos.Fault, error)
}

var faultKinds = map[string]faultDef{
	"provider_unavailable": {doc: "PSP answers 503 before processing", target: targetProvider,
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.Unavailable(f.Target, e.t.sims()[f.Target], e.baseBehaviour), nil
		}},
	"provider_error_rate": {doc: "a share (rate) of PSP requests answer 503 before processing", target: targetProvider, params: []string{"rate"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.ErrorRate(f.Target, e.t.sims()[f.Target], e.baseBehaviour, f.Rate), nil
		}},
	"provider_refuse": {doc: "PSP stops listening: connection refused", target: targetProvider,
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.Refuse(f.Target, e.t.sims()[f.Target], e.baseBehaviour), nil
		}},
	"provider_latency": {doc: "PSP answers after latency", target: targetProvider, params: []string{"latency"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.Latency(f.Target, e.t.sims()[f.Target], e.baseBehaviour, f.Latency.D()), nil
		}},
	"provider_hang": {doc: "PSP answers after latency, beyond the provider timeout (needs an in_doubt expectation)", target: targetProvider, params: []string{"latency"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.Hang(f.Target, e.t.sims()[f.Target], e.baseBehaviour, f.Latency.D()), nil
		}},
	"provider_charge_then_timeout": {doc: "PSP processes a share (rate) of requests and stalls for stall", target: targetProvider, params: []string{"rate", "stall"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.ChargeThenTimeout(f.Target, e.t.sims()[f.Target], e.baseBehaviour, f.Rate, f.Stall.D()), nil
		}},
	"provider_malformed": {doc: "PSP processes a share (rate) of requests and answers garbled JSON", target: targetProvider, params: []string{"rate"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.Malformed(f.Target, e.t.sims()[f.Target], e.baseBehaviour, f.Rate), nil
		}},
	"provider_slow_notify": {doc: "redirect notifications arrive after delay, duplicated", target: targetProvider, params: []string{"delay", "duplicates"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.SlowNotify(f.Target, e.t.sims()[f.Target], e.baseBehaviour, f.Delay.D(), f.Duplicates), nil
		}},
	"node_stop": {doc: "crash a node in process (raft stops at once, then the API drains; data kept); restarted after for", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.StopNode(e.c, f.Target), nil }},
	"node_wipe_rejoin": {doc: "crash a node and wipe its data; after for it rejoins as a new member", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.WipeAndRejoin(e.c, f.Target), nil }},
	"partition": {doc: "cut raft traffic between target and the rest", target: targetPartition,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewPartition(e.c, f.Target, false), nil }},
	"partition_one_way": {doc: "target cannot send raft messages (still receives)", target: targetPartition,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewPartition(e.c, f.Target, true), nil }},
	"message_loss": {doc: "every node drops a share (rate) of its outgoing raft messages (seeded)", target: targetNone, params: []string{"rate"},
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewMessageLoss(e.c, f.Rate, e.seed), nil }},
	"message_delay": {doc: "every node holds a share (rate) of its raft messages up to latency (late, reordered)", target: targetNone, params: []string{"rate", "latency"},
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.NewMessageDelay(e.c, f.Rate, f.Latency.D(), e.seed), nil
		}},
	"message_duplicate": {doc: "every node sends a share (rate) of its raft messages twice", target: targetNone, params: []string{"rate"},
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewMessageDuplicate(e.c, f.Rate, e.seed), nil }},
	"mutant_double_book": {doc: "MUTANT: charge a payment a second time straight at the PSP", target: targetProvider, mutant: true,
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.NewDoubleBook(f.Target, e.t.sims()[f.Target]), nil
		}},
	"mutant_ghost_refund": {doc: "MUTANT: refund 1 minor unit straight at the PSP", target: targetProvider, mutant: true,
		build: func(e *env, f Fault) (chaos.Fault, error) {
			return chaos.NewGhostRefund(f.Target, e.t.sims()[f.Target]), nil
		}},
	"mutant_wipe_all": {doc: "MUTANT: wipe every node's data (total loss)", target: targetNone, mutant: true,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewWipeAll(e.c), nil }},
	// The switch itself broken (txswitch.Sabotage), on the target nodes
	// for the fault's for.
	"mutant_" + txswitch.FlawChargeTwiceOnRetry: {doc: "MUTANT: the switch re-sends a payment call that ended in doubt under a new idempotency key", target: targetNodeOrAll, mutant: true,
		build: sabotage(txswitch.FlawChargeTwiceOnRetry)},
	"mutant_" + txswitch.FlawAckBeforeCommit: {doc: "MUTANT: the switch answers 201 for an order before proposing it (proposed 300 ms later)", target: targetNodeOrAll, mutant: true,
		build: sabotage(txswitch.FlawAckBeforeCommit)},
	"mutant_" + txswitch.FlawApplyTwice: {doc: "MUTANT: the node applies every committed entry twice", target: targetNodeOrAll, mutant: true,
		build: sabotage(txswitch.FlawApplyTwice)},
	"mutant_" + txswitch.FlawSlowAnswer: {doc: "MUTANT: the switch holds every payment's answer 1 s before sending it (target all or leader: followers forward payments)", target: targetNodeOrAll, mutant: true,
		build: func(e *env, f Fault) (chaos.Fault, error) {
			if f.Target != "all" && f.Target != "leader" {
				return nil, fmt.Errorf("mutant_%s on %q: only the leader answers payments (followers forward them), target all or leader", txswitch.FlawSlowAnswer, f.Target)
			}
			return chaos.NewSabotage(e.c, txswitch.FlawSlowAnswer, f.Target), nil
		}},
}

// QuietP99 is the latency a scenario without faults expects of every call
// at the 99th percentile. Healthy in-process clusters answer in 5-50 ms at
// p99 with two scenarios sharing the 2-core machine; 250 ms leaves room
// for a slower CI machine and still fails a switch that takes a second.
const QuietP99 = 250 * time.Millisecond

func sabotage(flaw string) func(*env, Fault) (chaos.Fault, error) {
	return func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewSabotage(e.c, flaw, f.Target), nil }
}

// Check names: the always-on safety checks, then the expectation kinds.
const (
	CheckNoLostWrites      = "no_lost_writes"
	CheckNeverChargedTwice = "never_charged_twice"
	CheckMoneyAddsUp       = "money_adds_up"
	CheckIdempotency       = "idempotency"
	CheckBadInput          = "bad_input"
	CheckFaultFired        = "fault_fired"
	CheckReplicasAgree     = "replicas_agree"
	CheckSettled           = "settled"
	CheckTrafficRan        = "traffic_ran"
	// CheckReadsSeeWrites: no read that started after a create was
	// acknowledged answered 404 for it (linearizable reads, DESIGN 6, in
	// the form a client can check without a model).
	CheckReadsSeeWrites = "reads_see_writes"
)

// AlwaysOn are the checks every scenario runs.
var AlwaysOn = []string{CheckNoLostWrites, CheckNeverChargedTwice, CheckMoneyAddsUp, CheckIdempotency,
	CheckBadInput, CheckFaultFired, CheckReplicasAgree, CheckSettled, CheckTrafficRan, CheckReadsSeeWrites, CheckLinearizable}

var expectNames = []string{"breaker_open", "leader_change", "availability", "saw_status", "timeline_event",
	"provider_used", "final_status", "min_acked", "rejected", "members", "method_hidden",
	"order_status", "methods_offered", "surcharge", "latency"}

var providerNames = txswitch.DefaultProviderNames()

var paymentStatuses = []string{txswitch.PaymentPending, txswitch.PaymentInDoubt, txswitch.PaymentAuthorized,
	txswitch.PaymentCaptured, txswitch.PaymentPartiallyRefunded, txswitch.PaymentRefunded, txswitch.PaymentDeclined,
	txswitch.PaymentFailed, txswitch.PaymentCancelled, txswitch.PaymentHeldForReview}

var nameRE = regexp.MustCompile(`^[a-z0-9_][a-z0-9_./-]*$`)

// Registry describes the registries for `txswitch scenarios list -v`.
func Registry() string {
	var b strings.Builder
	b.WriteString("shapes:\n")
	for _, k := range sortedKeys(shapes) {
		fmt.Fprintf(&b, "  %-30s %s\n", k, shapes[k].doc)
	}
	b.WriteString("flows:\n")
	for _, k := range sortedKeys(flows) {
		fmt.Fprintf(&b, "  %-30s %s\n", k, flows[k].doc)
	}
	b.WriteString("faults:\n")
	for _, k := range sortedKeys(faultKinds) {
		fmt.Fprintf(&b, "  %-30s %s\n", k, faultKinds[k].doc)
	}
	fmt.Fprintf(&b, "checks (always on): %s\nexpectations: %s\ntags: %s\n",
		strings.Join(AlwaysOn, ", "), strings.Join(expectNames, ", "), strings.Join(knownTags, ", "))
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// validate fills defaults and rejects anything outside the registries.
func (s *Scenario) validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("name %q: want lower-case letters, digits and _ . / -", s.Name)
	}
	if len(s.Tags) == 0 {
		return fmt.Errorf("no tags (one of %v)", knownTags)
	}
	for _, t := range s.Tags {
		if !slices.Contains(knownTags, t) {
			return fmt.Errorf("unknown tag %q (known: %v)", t, knownTags)
		}
	}
	if s.Topology.Nodes == 0 {
		s.Topology.Nodes = 3
	}
	if s.Topology.Nodes < 1 || s.Topology.Nodes > maxNodes {
		return fmt.Errorf("topology.nodes %d: want 1..%d", s.Topology.Nodes, maxNodes)
	}
	if err := s.Topology.validateTier(); err != nil {
		return err
	}
	if err := s.Config.defaults(); err != nil {
		return err
	}
	if err := s.Traffic.validate(); err != nil {
		return fmt.Errorf("traffic: %w", err)
	}
	hasMutant := false
	for i := range s.Faults {
		f := &s.Faults[i]
		def, ok := faultKinds[f.Kind]
		if !ok {
			return fmt.Errorf("faults[%d]: unknown kind %q (known: %v)", i, f.Kind, sortedKeys(faultKinds))
		}
		hasMutant = hasMutant || def.mutant
		if err := faultInTier(f.Kind, def, s.Topology.Tier); err != nil {
			return fmt.Errorf("faults[%d]: %w", i, err)
		}
		if err := f.validate(def, s.Topology.Nodes, s.Traffic.Duration.D()); err != nil {
			return fmt.Errorf("faults[%d] (%s): %w", i, f.Kind, err)
		}
	}
	if err := providerFaultsOverlap(s.Faults, s.Traffic.Duration.D()); err != nil {
		return err
	}
	if len(s.Faults) > 0 && len(s.Expect) == 0 && len(s.ExpectFail) == 0 {
		return fmt.Errorf("faults without an expectation: say what each fault must visibly do (breaker_open, leader_change, saw_status...)")
	}
	if hasMutant && len(s.ExpectFail) == 0 {
		return fmt.Errorf("a mutant fault needs expect_fail: the scenario exists to prove a check fails")
	}
	// expect_fail turns checks around: only a mutant may, and never
	// fault_fired (a mutant that never broke anything proves nothing).
	// Otherwise a scenario whose fault never fired passed by expecting
	// fault_fired to fail, and any safety check could be inverted.
	if !hasMutant && len(s.ExpectFail) > 0 {
		return fmt.Errorf("expect_fail %v without a mutant fault: only a mutant scenario may need checks to fail", s.ExpectFail)
	}
	if slices.Contains(s.ExpectFail, CheckFaultFired) {
		return fmt.Errorf("expect_fail: %s cannot be expected to fail (a fault that never fired proves nothing)", CheckFaultFired)
	}
	for i, e := range s.Expect {
		if handled, err := e.validateExt(s); handled {
			if err != nil {
				return fmt.Errorf("expect[%d]: %w", i, err)
			}
			continue
		}
		if err := e.validate(s); err != nil {
			return fmt.Errorf("expect[%d]: %w", i, err)
		}
	}
	for _, c := range s.ExpectFail {
		if !slices.Contains(AlwaysOn, c) && !slices.Contains(expectNames, c) && !slices.Contains(extChecks, c) {
			return fmt.Errorf("expect_fail: unknown check %q", c)
		}
	}
	if err := validateExt(s); err != nil {
		return err
	}
	// A scenario without faults is held to QuietP99 unless it sets its own
	// latency: with nothing broken, a slow answer is a regression of its
	// own, and the only one the safety checks cannot see. It judges
	// whatever calls the scenario made (traffic_ran fails one that made
	// none), so a small scenario does not fail for its size.
	if len(s.Faults) == 0 && !slices.ContainsFunc(s.Expect, func(e Expect) bool { return e.Latency != nil }) {
		s.Expect = append(s.Expect, Expect{Latency: &ExpectLatency{P99: Duration(QuietP99), Window: "whole", MinCalls: 1}})
	}
	if s.Settle < 0 || s.Settle.D() > maxDuration {
		return fmt.Errorf("settle %v: want 0..%v", s.Settle.D(), maxDuration)
	}
	if s.Settle == 0 {
		s.Settle = Duration(10 * time.Second)
	}
	if s.Timeout < 0 || s.Timeout.D() > maxTimeout {
		return fmt.Errorf("timeout %v: want 0..%v", s.Timeout.D(), maxTimeout)
	}
	if s.Timeout != 0 && s.Timeout.D() <= s.Traffic.Duration.D() {
		return fmt.Errorf("timeout %v is not longer than the traffic (%v): every run would time out", s.Timeout.D(), s.Traffic.Duration.D())
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(60*time.Second + s.Traffic.Duration.D())
	}
	return nil
}

// providerFaultsOverlap refuses two provider faults on one PSP whose
// windows overlap. Each sets the PSP's behaviour to the base one with its
// own change, and puts the base back when it ends: the later one replaced
// the earlier's change, and the first to end ended the other too (a PSP
// "unavailable" until 3.5 s took payments from 1.5 s on), so the scenario
// tested less than it said. Faults that follow each other are fine.
func providerFaultsOverlap(faults []Fault, traffic time.Duration) error {
	window := func(f Fault) (time.Duration, time.Duration) {
		if f.For > 0 {
			return f.At.D(), f.At.D() + f.For.D()
		}
		return f.At.D(), max(traffic, f.At.D())
	}
	behaviour := func(f Fault) bool {
		def := faultKinds[f.Kind]
		return def.target == targetProvider && !def.mutant
	}
	for i, a := range faults {
		for j := i + 1; j < len(faults); j++ {
			b := faults[j]
			if !behaviour(a) || !behaviour(b) || a.Target != b.Target {
				continue
			}
			aFrom, aTo := window(a)
			bFrom, bTo := window(b)
			if aFrom < bTo && bFrom < aTo {
				return fmt.Errorf("faults[%d] (%s, %v-%v) and faults[%d] (%s, %v-%v) change %s at the same time: each puts the PSP's base behaviour back when it ends, so one would end the other; let one window end before the other starts",
					i, a.Kind, aFrom, aTo, j, b.Kind, bFrom, bTo, a.Target)
			}
		}
	}
	return nil
}

func (t *Tuning) defaults() error {
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&t.ProviderTimeout, time.Second)
	def(&t.BreakerOpen, 1500*time.Millisecond)
	def(&t.ResolveEvery, 200*time.Millisecond)
	def(&t.TickInterval, 100*time.Millisecond)
	def(&t.AsyncComplete, 150*time.Millisecond)
	if t.BreakerFailures == 0 {
		t.BreakerFailures = int(txswitch.DefaultBreakerConfig().ConsecutiveFailures)
	}
	for name, d := range map[string]Duration{"provider_timeout": t.ProviderTimeout, "breaker_open": t.BreakerOpen,
		"resolve_every": t.ResolveEvery, "tick": t.TickInterval, "async_complete": t.AsyncComplete} {
		if d < 0 || d.D() > time.Minute {
			return fmt.Errorf("config.%s %v: want 0..1m", name, d.D())
		}
	}
	if t.BreakerFailures < 1 || t.BreakerFailures > 1000 {
		return fmt.Errorf("config.breaker_failures %d: want 1..1000", t.BreakerFailures)
	}
	return nil
}

func (t *Traffic) validate() error {
	if t.Shape == "" {
		t.Shape = "steady"
	}
	if _, ok := shapes[t.Shape]; !ok {
		return fmt.Errorf("unknown shape %q (known: %v)", t.Shape, sortedKeys(shapes))
	}
	if !(t.Rate > 0 && t.Rate <= maxRate) { // NaN too
		return fmt.Errorf("rate %v: want (0, %d]", t.Rate, maxRate)
	}
	if t.Duration <= 0 || t.Duration.D() > maxDuration {
		return fmt.Errorf("duration %v: want (0, %v]", t.Duration.D(), maxDuration)
	}
	if t.Concurrency == 0 {
		t.Concurrency = 64
	}
	if t.Concurrency < 1 || t.Concurrency > maxConcurrency {
		return fmt.Errorf("concurrency %d: want 1..%d", t.Concurrency, maxConcurrency)
	}
	if len(t.Mix) == 0 {
		return fmt.Errorf("mix is empty")
	}
	total := 0.0
	for f, w := range t.Mix {
		if _, ok := flows[f]; !ok {
			return fmt.Errorf("mix: unknown flow %q (known: %v)", f, sortedKeys(flows))
		}
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("mix: weight of %s %v: want >= 0", f, w)
		}
		total += w
	}
	if total <= 0 {
		return fmt.Errorf("mix: weights sum to 0")
	}
	if t.Retries == nil {
		// Five retries back off 0.1+0.2+0.4+0.8+1s: long enough to ride
		// out an election, as a gateway honouring Retry-After would.
		r := 5
		t.Retries = &r
	}
	if *t.Retries < 0 || *t.Retries > 20 {
		return fmt.Errorf("retries %d: want 0..20", *t.Retries)
	}
	switch t.Target {
	case "":
		t.Target = "any"
	case "any", "leader", "followers":
	default:
		return fmt.Errorf("target %q: want any, leader or followers", t.Target)
	}
	return nil
}

func (f *Fault) validate(def faultDef, nodes int, dur time.Duration) error {
	switch def.target {
	case targetProvider:
		if !slices.Contains(providerNames, f.Target) {
			return fmt.Errorf("target %q: want a provider %v", f.Target, providerNames)
		}
	case targetNode:
		if !chaos.ValidNodeTarget(f.Target, nodes) {
			return fmt.Errorf("target %q: want leader, follower or n1..n%d", f.Target, nodes)
		}
	case targetNodeOrAll:
		if f.Target != "all" && !chaos.ValidNodeTarget(f.Target, nodes) {
			return fmt.Errorf("target %q: want all, leader, follower or n1..n%d", f.Target, nodes)
		}
	case targetPartition:
		if !chaos.ValidPartitionTarget(f.Target) {
			return fmt.Errorf("target %q: want leader, follower or minority", f.Target)
		}
		if nodes < 3 {
			return fmt.Errorf("a partition needs at least 3 nodes")
		}
	case targetNone:
		if f.Target != "" {
			return fmt.Errorf("takes no target")
		}
	}
	set := map[string]bool{"rate": f.Rate != 0, "latency": f.Latency != 0, "stall": f.Stall != 0,
		"delay": f.Delay != 0, "duplicates": f.Duplicates != 0, "bandwidth": f.Bandwidth != 0}
	for p, isSet := range set {
		if isSet && !slices.Contains(def.params, p) {
			return fmt.Errorf("parameter %q does not apply (takes %v)", p, def.params)
		}
	}
	for _, p := range def.params {
		if !set[p] && p != "duplicates" {
			return fmt.Errorf("parameter %q is required", p)
		}
	}
	if !(f.Rate >= 0 && f.Rate <= 1) { // NaN too
		return fmt.Errorf("rate %v: want 0..1", f.Rate)
	}
	if f.Bandwidth < 0 || f.Bandwidth > 1<<20 {
		return fmt.Errorf("bandwidth %d KB/s: want 0..%d", f.Bandwidth, 1<<20)
	}
	if f.Duplicates < 0 || f.Duplicates > 10 {
		return fmt.Errorf("duplicates %d: want 0..10", f.Duplicates)
	}
	for name, d := range map[string]Duration{"latency": f.Latency, "stall": f.Stall, "delay": f.Delay, "for": f.For, "at": f.At} {
		if d < 0 || d.D() > maxDuration {
			return fmt.Errorf("%s %v out of range", name, d.D())
		}
	}
	if f.At.D() >= dur {
		return fmt.Errorf("at %v is not before the end of the traffic (%v)", f.At.D(), dur)
	}
	return nil
}

func (e Expect) validate(s *Scenario) error {
	n := 0
	for _, set := range []bool{e.BreakerOpen != nil, e.LeaderChange != nil, e.Availability != nil, e.SawStatus != nil,
		e.TimelineEvent != nil, e.ProviderUsed != nil, e.FinalStatus != nil, e.MinAcked != nil, e.Rejected != nil, e.MemberCount != nil,
		e.MethodHidden != nil, e.OrderStatus != nil, e.MethodsOffered != nil, e.Surcharge != nil, e.Latency != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("want exactly one of %v per entry, got %d", expectNames, n)
	}
	window := func(w *string) error {
		switch *w {
		case "":
			*w = "whole"
		case "whole":
		case "during_faults":
			if len(s.Faults) == 0 {
				return fmt.Errorf("window during_faults without faults")
			}
		default:
			return fmt.Errorf("window %q: want whole or during_faults", *w)
		}
		return nil
	}
	status := func(st string) error {
		if !slices.Contains(paymentStatuses, st) {
			return fmt.Errorf("unknown payment status %q", st)
		}
		return nil
	}
	flow := func(f string) error {
		if _, ok := flows[f]; f != "" && !ok {
			return fmt.Errorf("unknown flow %q", f)
		}
		return nil
	}
	switch {
	case e.BreakerOpen != nil:
		if !slices.Contains(providerNames, e.BreakerOpen.Provider) {
			return fmt.Errorf("breaker_open: unknown provider %q", e.BreakerOpen.Provider)
		}
		if e.BreakerOpen.Within <= 0 {
			return fmt.Errorf("breaker_open: within is required")
		}
		if len(s.Faults) == 0 {
			return fmt.Errorf("breaker_open needs a fault to time it from")
		}
	case e.LeaderChange != nil:
		if e.LeaderChange.Within <= 0 || len(s.Faults) == 0 {
			return fmt.Errorf("leader_change: needs within and a fault")
		}
	case e.Latency != nil:
		x := e.Latency
		if x.P99 <= 0 {
			return fmt.Errorf("latency: p99 is required")
		}
		if x.Max != 0 && x.Max < x.P99 {
			return fmt.Errorf("latency: max %v below p99 %v", x.Max.D(), x.P99.D())
		}
		if x.MinCalls < 0 {
			return fmt.Errorf("latency: min_calls %d", x.MinCalls)
		}
		if x.Op != "" && !slices.Contains(callOps, x.Op) {
			return fmt.Errorf("latency: unknown op %q (one of %v)", x.Op, callOps)
		}
		return window(&x.Window)
	case e.Availability != nil:
		if !(e.Availability.Min > 0 && e.Availability.Min <= 1) { // NaN too
			return fmt.Errorf("availability: min %v: want (0,1]", e.Availability.Min)
		}
		return window(&e.Availability.Window)
	case e.SawStatus != nil:
		if err := status(e.SawStatus.Status); err != nil {
			return err
		}
		if e.SawStatus.Min == 0 {
			e.SawStatus.Min = 1
		}
		for _, st := range e.SawStatus.ResolvedTo {
			if err := status(st); err != nil {
				return err
			}
		}
	case e.TimelineEvent != nil:
		if e.TimelineEvent.Type == "" {
			return fmt.Errorf("timeline_event: type is required")
		}
		if e.TimelineEvent.Status != "" {
			if err := status(e.TimelineEvent.Status); err != nil {
				return err
			}
		}
		if e.TimelineEvent.Min == 0 {
			e.TimelineEvent.Min = 1
		}
		return flow(e.TimelineEvent.Flow)
	case e.ProviderUsed != nil:
		if !slices.Contains(providerNames, e.ProviderUsed.Provider) {
			return fmt.Errorf("provider_used: unknown provider %q", e.ProviderUsed.Provider)
		}
		// Without a min above 0 or a max it passed whatever happened.
		x := e.ProviderUsed
		if x.Min < 0 {
			return fmt.Errorf("provider_used: min %d: want 0 <= min <= max", x.Min)
		}
		if x.Max != nil && *x.Max < x.Min {
			return fmt.Errorf("provider_used: min %d, max %d: want 0 <= min <= max", x.Min, *x.Max)
		}
		if x.Min == 0 && x.Max == nil {
			return fmt.Errorf("provider_used: neither min (at least 1) nor max given: it would pass whatever happened")
		}
		return window(&e.ProviderUsed.Window)
	case e.FinalStatus != nil:
		if len(e.FinalStatus.Statuses) == 0 {
			return fmt.Errorf("final_status: statuses required")
		}
		for _, st := range e.FinalStatus.Statuses {
			if err := status(st); err != nil {
				return err
			}
		}
		if e.FinalStatus.Flow == "" {
			return fmt.Errorf("final_status: flow required")
		}
		return flow(e.FinalStatus.Flow)
	case e.MinAcked != nil:
		if e.MinAcked.Min < 1 {
			return fmt.Errorf("min_acked: min >= 1")
		}
		return flow(e.MinAcked.Flow)
	case e.Rejected != nil:
		if e.Rejected.Status < 400 || e.Rejected.Status > 599 || e.Rejected.Min < 1 {
			return fmt.Errorf("rejected: want a 4xx/5xx status and min >= 1")
		}
	case e.MemberCount != nil:
		if e.MemberCount.Count < 1 {
			return fmt.Errorf("members: count >= 1")
		}
	case e.MethodHidden != nil:
		if e.MethodHidden.Method == "" || len(e.MethodHidden.Providers) == 0 || len(s.Faults) == 0 {
			return fmt.Errorf("method_hidden: needs a method, its providers and a fault")
		}
		for _, p := range e.MethodHidden.Providers {
			if !slices.Contains(providerNames, p) {
				return fmt.Errorf("method_hidden: unknown provider %q", p)
			}
		}
		if !mixChecksOut(s.Traffic.Mix) {
			return fmt.Errorf("method_hidden: the mix needs checkout_methods (or a methods_* flow) to observe the checkout")
		}
	default:
		return e.validateBreadth(s, window, status, flow)
	}
	return nil
}

// Seed is a scenario's seed: the first 8 bytes of SHA-256 over the run
// seed and the name, so adding or renaming a scenario changes no other
// scenario's seed.
func Seed(runSeed uint64, name string) uint64 {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", runSeed, name)))
	return binary.BigEndian.Uint64(sum[:8])
}
