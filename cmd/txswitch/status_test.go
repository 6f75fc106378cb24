package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/consensus"
	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/storage/central"
	txswitch "github.com/txswitch/txswitch/switch"
)

// The status an operator reads during a rolling upgrade: the cluster
// version, this binary's range, and each member's report (or its absence).
func TestPrintStatusShowsVersions(t *testing.T) {
	st := cluster.Status{
		Raft: consensus.Status{ID: 1, State: "StateLeader", Leader: 1, Term: 4,
			Members:  []consensus.Peer{{ID: 1, RaftAddr: "r1", APIAddr: "a1"}, {ID: 2, RaftAddr: "r2", APIAddr: "a2"}},
			Progress: map[uint64]consensus.PeerProgress{1: {Match: 9, Next: 10, State: "StateReplicate"}, 2: {Match: 9, Next: 10, State: "StateReplicate"}}},
		Versions: txswitch.VersionStatus{Cluster: 2, Binary: txswitch.VersionRange{Min: 1, Max: 3},
			Members: map[uint64]txswitch.VersionRange{1: {Min: 1, Max: 3}}},
	}
	var b bytes.Buffer
	printStatus(&b, st, nil)
	out := b.String()
	for _, want := range []string{"cluster version 2 (this binary runs 1..3)", "1..3", "not reported"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
}

// A node removed from the cluster says so first, not "Follower leader 1"
// (raft's last view, which no longer changes), and what to do with it.
func TestPrintStatusSaysARemovedNodeIsNotAMember(t *testing.T) {
	st := cluster.Status{
		Raft: consensus.Status{ID: 4, State: "StateFollower", Leader: 1, Term: 2, Removed: true,
			Members: []consensus.Peer{{ID: 1, RaftAddr: "r1", APIAddr: "a1"}, {ID: 2, RaftAddr: "r2", APIAddr: "a2"}}},
		APIAddr: "a4",
	}
	var b bytes.Buffer
	printStatus(&b, st, nil)
	first, _, _ := strings.Cut(b.String(), "\n")
	if !strings.HasPrefix(first, "node 4 (a4)  NOT A MEMBER: removed from the cluster") || strings.Contains(first, "  state Follower") {
		t.Fatalf("first line %q does not say the node was removed:\n%s", first, b.String())
	}
	for _, want := range []string{"removed_from_cluster", "--join", "the members it knew when it was removed"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("status lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "no leader reachable") {
		t.Fatalf("a removed node's status looks for a leader:\n%s", b.String())
	}
}

// A breaker that changed shows since when and how often; one that never
// changed shows its state alone.
func TestPrintStatusShowsBreakerHistory(t *testing.T) {
	since := time.Date(2026, 12, 1, 3, 12, 5, 0, time.UTC)
	st := cluster.Status{
		Breakers: map[string]map[string]txswitch.BreakerState{"psp_b": {"ideal": txswitch.BreakerOpen, "card": txswitch.BreakerClosed}},
		BreakerViews: map[string]map[string]providers.BreakerView{"psp_b": {
			"ideal": {State: txswitch.BreakerOpen, Changes: 7, Since: since},
			"card":  {State: txswitch.BreakerClosed},
		}},
	}
	var b bytes.Buffer
	printStatus(&b, st, nil)
	want := "  psp_b  card: closed, ideal: open since 2026-12-01T03:12:05Z (7 changes)\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, b.String())
	}
}

// The providers a configuration must keep, each with why.
func TestPrintStatusShowsProvidersWithPayments(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	st := cluster.Status{ProvidersWithPayments: []txswitch.ProviderPayments{
		{Provider: "psp_a"}, {Provider: "psp_c", FirstPayment: "pay_42", At: &at},
	}}
	var b bytes.Buffer
	printStatus(&b, st, nil)
	want := "providers with payments (a configuration must keep them; unroute them instead): psp_a (configured when the cluster moved to version 11), psp_c (first pay_42 at 2026-12-02T09:30:00Z)\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printStatus(&b, cluster.Status{}, nil)
	if strings.Contains(b.String(), "providers with payments") {
		t.Fatalf("a status without marks lists providers:\n%s", b.String())
	}
}

func TestIntentsLine(t *testing.T) {
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		is   cluster.IntentsStatus
		want string
	}{
		{"nothing open", cluster.IntentsStatus{Count: map[string]int{txswitch.IntentInFlight: 0}}, "none"},
		{"states in their order, each with its oldest", cluster.IntentsStatus{
			Count:  map[string]int{txswitch.IntentInDoubt: 1, txswitch.IntentInFlight: 3},
			Oldest: map[string]time.Time{txswitch.IntentInDoubt: now.Add(-12 * time.Minute), txswitch.IntentInFlight: now.Add(-1500 * time.Millisecond)},
		}, "in_flight 3 (oldest 1s), in_doubt 1 (oldest 12m0s)"},
		{"an operator is needed", cluster.IntentsStatus{
			Count:  map[string]int{txswitch.IntentAmountMismatch: 2},
			Oldest: map[string]time.Time{txswitch.IntentAmountMismatch: now.Add(-time.Hour)},
		}, "amount_mismatch 2 (oldest 1h0m0s); amount_mismatch needs an operator: GET /v1/admin/intents?state=amount_mismatch lists them, POST /v1/admin/payments/{id}/resolve settles one"},
		{"more than counted", cluster.IntentsStatus{Count: map[string]int{txswitch.IntentInDoubt: 100_000}, Truncated: true},
			"in_doubt 100000 (at least: too many to count)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := intentsLine(tt.is, now); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// On a follower the breakers and the export shown are the leader's: the
// follower routes no payment and exports nothing, and its own figures (no
// breakers, a closed database breaker, no lag) read as a healthy cluster
// while the leader reports a provider down and the database unreachable.
func TestPrintStatusOnAFollowerShowsTheLeaders(t *testing.T) {
	since := time.Date(2026, 12, 1, 15, 24, 18, 0, time.UTC)
	follower := cluster.Status{
		Raft:      consensus.Status{ID: 1, State: "StateFollower", Leader: 2, Term: 5},
		CentralDB: "exported by the leader, node 2 (a2); this node does not export",
		Breakers:  map[string]map[string]txswitch.BreakerState{"psp_a": {"card": txswitch.BreakerHalfOpen}},
		BreakerViews: map[string]map[string]providers.BreakerView{"psp_a": {
			"card": {State: txswitch.BreakerHalfOpen, Changes: 6, Since: since},
		}},
	}
	leader := cluster.Status{
		Raft:      consensus.Status{ID: 2, State: "StateLeader", Leader: 2, Term: 5},
		CentralDB: "breaker open, lag 2601 events / 81.9s, last error: failed to connect",
		Export:    &central.ExportStats{Leader: true, BreakerState: "open", LagEvents: 2601},
		Breakers:  map[string]map[string]txswitch.BreakerState{"psp_a": {"card": txswitch.BreakerOpen}},
		BreakerViews: map[string]map[string]providers.BreakerView{"psp_a": {
			"card": {State: txswitch.BreakerOpen, Changes: 1, Since: since.Add(time.Minute)},
		}},
	}
	var b bytes.Buffer
	printStatus(&b, follower, &leader)
	out := b.String()
	for _, want := range []string{
		"central database: exported by the leader, node 2 (a2); this node does not export\n",
		"central database on the leader, node 2: breaker open, lag 2601 events / 81.9s, last error: failed to connect\n",
		"breakers on the leader, node 2 (provider  method: state, since when, transitions):\n  psp_a  card: open since 2026-12-01T15:25:18Z (1 changes)\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "half_open") {
		t.Fatalf("status shows the follower's own breaker:\n%s", out)
	}
	b.Reset()
	printStatus(&b, follower, nil)
	if out := b.String(); !strings.Contains(out, "breakers: the leader's, node 2, which did not answer") || strings.Contains(out, "half_open") {
		t.Fatalf("status with the leader unreachable:\n%s", out)
	}
}
