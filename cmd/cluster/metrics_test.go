package cluster

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// scrapeMetrics reads a node's /metrics into series -> value, a series
// being the name with its labels as exposed (`name{a="x",b="y"}`).
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %d %v", addr, resp.StatusCode, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestE2EMetrics: the metrics an operator alerts on are served by every
// node and say what happened: one leader known to all, the followers'
// lag on the leader, provider calls by result (psp_a's refusals while it
// was down, psp_b taking its card payments), psp_a's open breaker, no
// intent left open, the versions and the outbox backlog.
func TestE2EMetrics(t *testing.T) {
	l := startE2E(t)
	e2eTuneProviders(t, l, 10_000, 30_000)
	leader := e2eAnyAddr(t, l, true)
	if r, p := e2ePay(t, l, leader, e2eCreateOrder(t, l, leader, e2eOrderReq(1999, "EUR", "NL")).ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 || p.Provider != "psp_a" {
		t.Fatalf("first payment: %d %s", r.Status, r.Body)
	}
	psA := l.Sims["psp_a"]
	if err := psA.SetBehaviour(sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageUnavailable}}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		// Not amounts ending in 05: the simulated PSPs decline those.
		o := e2eCreateOrder(t, l, leader, e2eOrderReq(int64(2000+10*i), "EUR", "NL"))
		if r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 || p.Provider != "psp_b" || p.Status != txswitch.PaymentCaptured {
			t.Fatalf("payment %d during psp_a's outage: %d %s", i, r.Status, r.Body)
		}
	}
	psA.ResetBehaviour()
	// A client is answered once the leader applied the payment's result;
	// a follower applies it a moment later, and shows the intent in
	// flight until then.
	waitFor(t, 20*time.Second, "every node to apply the last result", func() bool {
		for _, n := range l.Nodes() {
			if scrapeMetrics(t, n.APIAddr())[`txswitch_intents{state="in_flight"}`] != 0 {
				return false
			}
		}
		return true
	})

	leaders := 0.0
	var lm map[string]float64
	for _, n := range l.Nodes() {
		m := scrapeMetrics(t, n.APIAddr())
		for _, s := range []string{"txswitch_raft_term", "txswitch_raft_applied_index", "go_goroutines", "process_resident_memory_bytes"} {
			if m[s] <= 0 {
				t.Errorf("node %d: %s = %v", n.ID(), s, m[s])
			}
		}
		if m["txswitch_raft_has_leader"] != 1 || m["txswitch_raft_members"] != 3 {
			t.Errorf("node %d: has_leader %v members %v", n.ID(), m["txswitch_raft_has_leader"], m["txswitch_raft_members"])
		}
		for _, s := range txswitch.IntentStates {
			if v, ok := m[`txswitch_intents{state="`+s+`"}`]; !ok || v != 0 {
				t.Errorf("node %d: intents %s = %v (exposed %v), want 0", n.ID(), s, v, ok)
			}
		}
		if cv, bv := m["txswitch_cluster_version"], m["txswitch_binary_version_max"]; cv < 1 || bv < cv {
			t.Errorf("node %d: cluster version %v, binary max %v", n.ID(), cv, bv)
		}
		if m["txswitch_routing_config_version"] < 2 || m["txswitch_outbox_backlog_events"] <= 0 {
			t.Errorf("node %d: config version %v, outbox backlog %v (no central database: the outbox keeps every event)",
				n.ID(), m["txswitch_routing_config_version"], m["txswitch_outbox_backlog_events"])
		}
		leaders += m["txswitch_raft_is_leader"]
		if m["txswitch_raft_is_leader"] == 1 {
			lm = m
		}
	}
	if leaders != 1 || lm == nil {
		t.Fatalf("%v nodes say they lead", leaders)
	}
	lags := 0
	for s := range lm {
		if strings.HasPrefix(s, "txswitch_raft_follower_lag_entries{") {
			lags++
		}
	}
	if lags != 2 {
		t.Errorf("the leader reports the lag of %d members, want its 2 followers", lags)
	}
	calls := func(provider, result string) float64 {
		return lm[`txswitch_provider_calls_total{method="card",op="authorize",provider="`+provider+`",result="`+result+`"}`]
	}
	// The PSPs' own books, not the switch's word, say what the counts
	// must be: psp_a's refusals, and each PSP's approved authorizations.
	approvedAt := func(psp string) float64 {
		n := 0.0
		for _, e := range l.Sims[psp].Ledger() {
			if e.Op == txswitch.OpAuthorize && e.Status == txswitch.OutcomeApproved {
				n++
			}
		}
		return n
	}
	refused := float64(psA.Stats().RefusedUnavailable)
	if calls("psp_a", "approved") != approvedAt("psp_a") || calls("psp_b", "approved") != approvedAt("psp_b") ||
		calls("psp_a", "http_503") != refused || refused < 1 || approvedAt("psp_b") != 6 {
		t.Errorf("calls: psp_a approved %v (its ledger %v), refused %v (it refused %v); psp_b approved %v (its ledger %v)",
			calls("psp_a", "approved"), approvedAt("psp_a"), calls("psp_a", "http_503"), refused, calls("psp_b", "approved"), approvedAt("psp_b"))
	}
	if n := lm[`txswitch_provider_call_duration_seconds_count{op="authorize",provider="psp_a"}`]; n != 1+calls("psp_a", "http_503") {
		t.Errorf("psp_a authorize calls timed %v, want every call it answered", n)
	}
	if st := lm[`txswitch_provider_breaker_state{method="card",provider="psp_a"}`]; st != 2 {
		t.Errorf("psp_a card breaker %v, want 2 (open)", st)
	}
	if st, ok := lm[`txswitch_provider_breaker_state{method="card",provider="psp_b"}`]; !ok || st != 0 {
		t.Errorf("psp_b card breaker %v (exposed %v), want 0 (closed)", st, ok)
	}

	// Every metric docs/operations.md describes is one the node serves. A
	// write through a follower makes the forward counter appear; the
	// export metrics need a central database (e2e_central_test.go), the
	// oldest intent's age an open intent (switch's TestIntentStats) and the
	// in-doubt count a call left in doubt (providers' TestProviderMetrics).
	follower := e2eFollowerAddr(t, l)
	e2eCreateOrder(t, l, follower, e2eOrderReq(3000, "EUR", "NL"))
	// Nothing is open, and the listing a page of intents an alert would
	// send an operator to says so on a follower too.
	if r := e2eAdmin(t, l, follower, "GET", "/v1/admin/intents?state=in_doubt", nil); r.Status != 200 || string(r.Body) != `{"intents":[]}` {
		t.Errorf("intents on a follower: %d %s", r.Status, r.Body)
	}
	served := scrapeMetrics(t, follower)
	for k, v := range scrapeMetrics(t, l.Leader().APIAddr()) {
		served[k] = v
	}
	checkNamesServed(t, "../../docs/operations.md", regexp.MustCompile("`(txswitch_[a-z_]+)`"), served, 20)
	checkNamesServed(t, "../../docs/alerts.yml", regexp.MustCompile(`(txswitch_[a-z_]+)`), served, 10)
	checkAlertRules(t, "../../docs/alerts.yml")
}

// checkNamesServed checks that every metric name the pattern finds in a
// document is one of the served series (a histogram's by its _bucket).
// The exceptions are the metrics TestE2EMetrics cannot make appear (see
// there).
func checkNamesServed(t *testing.T, path string, pattern *regexp.Regexp, served map[string]float64, atLeast int) {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	named := pattern.FindAllStringSubmatch(string(doc), -1)
	if len(named) < atLeast {
		t.Fatalf("found %d metric names in %s", len(named), path)
	}
	for _, m := range named {
		name := strings.TrimSuffix(m[1], "_bucket")
		switch {
		case strings.HasPrefix(name, "txswitch_export_"), name == "txswitch_intent_oldest_age_seconds", name == "txswitch_provider_in_doubt_total":
			continue
		}
		found := false
		for s := range served {
			if s == name || strings.HasPrefix(s, name+"{") || strings.HasPrefix(s, name+"_bucket{") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s names %s, which no node serves", path, name)
		}
	}
}

// checkAlertRules checks that the alert file is a Prometheus rule file:
// groups of rules, each with a name, an expression, a duration, a
// severity and a summary.
func checkAlertRules(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	seen := map[string]bool{}
	for _, g := range file.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("%s: group %q without a name or rules", path, g.Name)
		}
		for _, r := range g.Rules {
			if _, err := time.ParseDuration(r.For); err != nil || r.Alert == "" || r.Expr == "" || seen[r.Alert] ||
				r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: rule %+v: needs a unique alert name, expr, a for duration, a severity and a summary", path, r)
			}
			seen[r.Alert] = true
		}
	}
	if len(seen) < 10 {
		t.Errorf("%s: %d alerts", path, len(seen))
	}
}

// A node that stops leading forgets its provider breakers. The auditor saw
// a deposed leader serve psp_a's card breaker as half-open for as long as
// it ran, while the new leader routed card payments through psp_a again:
// an alert on the breaker state acted on a value no node routed by.
func TestE2EDeposedLeaderForgetsBreakers(t *testing.T) {
	l := startE2E(t)
	e2eTuneProviders(t, l, 10_000, 30_000)
	old := l.Node(e2eLeaderIndex(t, l))
	psA := l.Sims["psp_a"]
	if err := psA.SetBehaviour(sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageUnavailable}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; e2eAdminStatus(t, l, old.APIAddr()).Breakers["psp_a"]["card"] != txswitch.BreakerOpen; i++ {
		if i == 20 {
			t.Fatal("psp_a's card breaker did not open on the leader")
		}
		o := e2eCreateOrder(t, l, old.APIAddr(), e2eOrderReq(int64(2000+10*i), "EUR", "NL"))
		if r, p := e2ePay(t, l, old.APIAddr(), o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 || p.Provider != "psp_b" {
			t.Fatalf("payment %d during psp_a's outage: %d %s", i, r.Status, r.Body)
		}
	}
	psA.ResetBehaviour()
	var to uint64
	for _, n := range l.Nodes() {
		if n.ID() != old.ID() {
			to = n.ID()
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := old.Raft().TransferLeadership(ctx, to)
	cancel()
	if err != nil {
		t.Fatalf("hand leadership to node %d: %v", to, err)
	}
	waitFor(t, 20*time.Second, "the deposed leader to forget its breakers", func() bool {
		return len(e2eAdminStatus(t, l, old.APIAddr()).Breakers["psp_a"]) == 0
	})
	for s := range scrapeMetrics(t, old.APIAddr()) {
		if strings.HasPrefix(s, "txswitch_provider_breaker_") {
			t.Errorf("the deposed leader serves %s", s)
		}
	}
	// The new leader starts with closed breakers and routes to psp_a.
	lead := e2eAnyAddr(t, l, true)
	o := e2eCreateOrder(t, l, lead, e2eOrderReq(3000, "EUR", "NL"))
	if r, p := e2ePay(t, l, lead, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 || p.Provider != "psp_a" {
		t.Fatalf("card payment on the new leader: %d %s", r.Status, r.Body)
	}
}
