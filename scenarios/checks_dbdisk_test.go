package scenarios

import (
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/storage/central"
)

// healthyCentral is healthy() plus PostgreSQL holding exactly it: events
// 1..5 once, the order and the captured payment.
func healthyCentral(t *testing.T) *Evidence {
	ev := healthy(t)
	ev.Ext = &ExtEvidence{Central: &CentralEvidence{
		Head: 5, DrainedAt: at(5000),
		Events:   pgEvents{Count: 5, DistinctIDs: 5, DistinctSeqs: 5, Min: 1, Max: 5},
		Orders:   map[string]pgOrder{"ord_1": {Status: "paid", Amount: 1000, Captured: 1000}},
		Payments: map[string]pgPayment{"pay_1": {Order: "ord_1", Status: "captured", Amount: 1000, Captured: 1000}},
		Refunds:  map[string]pgRefund{},
	}}
	return ev
}

func TestCentralExactlyOnce(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *CentralEvidence)
		pass bool
	}{
		{"healthy", func(*CentralEvidence) {}, true},
		{"an event exported twice under two ids", func(c *CentralEvidence) {
			c.Events.Count, c.Events.DistinctIDs, c.Events.DistinctSeqs, c.Events.Max = 6, 6, 6, 6
		}, false},
		{"events skipped", func(c *CentralEvidence) {
			c.Events = pgEvents{Count: 3, DistinctIDs: 3, DistinctSeqs: 3, Min: 1, Max: 5}
			c.Gaps = []int64{2, 3}
		}, false},
		{"export behind the head", func(c *CentralEvidence) {
			c.Events = pgEvents{Count: 4, DistinctIDs: 4, DistinctSeqs: 4, Min: 1, Max: 4}
		}, false},
		{"never drained", func(c *CentralEvidence) { c.DrainedAt = time.Time{} }, false},
		{"nothing exported", func(c *CentralEvidence) { c.Head, c.Events = 0, pgEvents{} }, false},
		{"acknowledged payment missing", func(c *CentralEvidence) { delete(c.Payments, "pay_1") }, false},
		{"acknowledged order missing", func(c *CentralEvidence) { delete(c.Orders, "ord_1") }, false},
		{"payment amount differs", func(c *CentralEvidence) { p := c.Payments["pay_1"]; p.Amount = 999; c.Payments["pay_1"] = p }, false},
		{"payment state behind the nodes", func(c *CentralEvidence) {
			p := c.Payments["pay_1"]
			p.Status, p.Captured = "authorized", 0
			c.Payments["pay_1"] = p
		}, false},
		{"order amount differs", func(c *CentralEvidence) { o := c.Orders["ord_1"]; o.Amount = 1; c.Orders["ord_1"] = o }, false},
		{"reading failed", func(c *CentralEvidence) { c.Err = "connection refused" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthyCentral(t)
			tc.mod(ev.Ext.Central)
			r := checkCentralExactlyOnce(ev)
			if r.Passed != tc.pass {
				t.Fatalf("passed=%v, want %v (%s %v)", r.Passed, tc.pass, r.Note, r.Violations)
			}
		})
	}
	ev := healthy(t)
	if r := checkCentralExactlyOnce(ev); r.Passed {
		t.Fatal("passed without any evidence from PostgreSQL")
	}
}

func exportSample(ms int, lag, wm, head uint64, breaker, lastErr string) ExtSample {
	return ExtSample{At: at(ms), Export: &central.ExportStats{Leader: true, LagEvents: lag, Watermark: wm, LastSeq: head,
		BreakerState: breaker, LastError: lastErr}}
}

func nodesSample(ms int, nodes ...NodeSample) ExtSample { return ExtSample{At: at(ms), Nodes: nodes} }

func TestDBAndDiskExpectations(t *testing.T) {
	dbFault := []FaultRun{{Spec: Fault{Kind: "db_kill"}, Events: []chaos.Event{
		{Action: "inject", At: at(1000)}, {Action: "effect", Hit: true, At: at(1010)}, {Action: "undo", At: at(3000)}}}}
	diskFault := []FaultRun{{Spec: Fault{Kind: "disk_write_error", Target: "leader"}, Events: []chaos.Event{
		{Action: "inject", At: at(1000), Target: "n1"},
		{Action: "observed", At: at(1200), Target: "n1", Detail: `readyz 503: raft node stopped: pebblestore: storage failed; node must stop: write 000002.log: input/output error`},
		{Action: "undo", At: at(3000), Target: "n1", Detail: "restarted"}, {Action: "effect", Hit: true, At: at(3100), Target: "n1"}}}}
	outage := []ExtSample{exportSample(900, 2, 40, 42, "closed", ""), exportSample(1500, 60, 42, 102, "open", "begin: conn closed"),
		exportSample(2900, 150, 42, 192, "open", "begin: conn closed")}
	caughtUp := func(appliedAt int) []ExtSample {
		return []ExtSample{
			nodesSample(3050, NodeSample{ID: 2, Leader: true, Commit: 500, Applied: 500}, NodeSample{ID: 1, Applied: 300}),
			nodesSample(appliedAt, NodeSample{ID: 2, Leader: true, Commit: 540, Applied: 540}, NodeSample{ID: 1, Applied: 510}),
		}
	}
	cases := []struct {
		name    string
		x       Expect
		faults  []FaultRun
		samples []ExtSample
		pass    bool
	}{
		{"lag and failure visible", Expect{ExportLag: &ExpectExportLag{MinEvents: 100, Failing: true}}, dbFault, outage, true},
		{"lag too small", Expect{ExportLag: &ExpectExportLag{MinEvents: 1000}}, dbFault, outage, false},
		{"failure never shown", Expect{ExportLag: &ExpectExportLag{Failing: true}}, dbFault,
			[]ExtSample{exportSample(1500, 60, 42, 102, "closed", "")}, false},
		{"lag outside the fault", Expect{ExportLag: &ExpectExportLag{MinEvents: 10}}, dbFault,
			[]ExtSample{exportSample(500, 60, 42, 102, "open", "x"), exportSample(3500, 60, 42, 102, "open", "x")}, false},
		{"no db fault", Expect{ExportLag: &ExpectExportLag{MinEvents: 1}}, diskFault, outage, false},
		{"drained in time", Expect{ExportDrained: &ExpectWithin{Within: Duration(2 * time.Second)}}, dbFault,
			append(outage, exportSample(3500, 20, 150, 210, "closed", ""), exportSample(4000, 5, 205, 210, "closed", "")), true},
		{"drained too late", Expect{ExportDrained: &ExpectWithin{Within: Duration(2 * time.Second)}}, dbFault,
			append(outage, exportSample(3500, 20, 150, 210, "closed", ""), exportSample(6000, 5, 205, 210, "closed", "")), false},
		{"never drained", Expect{ExportDrained: &ExpectWithin{Within: Duration(2 * time.Second)}}, dbFault,
			append(outage, exportSample(3500, 150, 42, 210, "open", "x")), false},
		{"no backlog to drain", Expect{ExportDrained: &ExpectWithin{Within: Duration(2 * time.Second)}}, dbFault,
			[]ExtSample{exportSample(2000, 0, 42, 42, "closed", ""), exportSample(3500, 0, 50, 50, "closed", "")}, false},
		{"a slow database: lagged during the fault, caught up before its end", Expect{ExportDrained: &ExpectWithin{Within: Duration(2 * time.Second)}}, dbFault,
			[]ExtSample{exportSample(2000, 30, 42, 72, "closed", ""), exportSample(2900, 0, 80, 80, "closed", "")}, true},
		{"a backlog before the fault only", Expect{ExportDrained: &ExpectWithin{Within: Duration(2 * time.Second)}}, dbFault,
			[]ExtSample{exportSample(500, 30, 42, 72, "closed", ""), exportSample(2900, 0, 80, 80, "closed", "")}, false},
		{"refused and said why", Expect{DiskRefused: &ExpectDiskRefused{Reason: "input/output error"}}, diskFault, nil, true},
		{"refused for another reason", Expect{DiskRefused: &ExpectDiskRefused{Reason: "no space left on device"}}, diskFault, nil, false},
		{"never refused", Expect{DiskRefused: &ExpectDiskRefused{Reason: "storage failed"}},
			[]FaultRun{{Spec: diskFault[0].Spec, Events: []chaos.Event{diskFault[0].Events[0], diskFault[0].Events[2]}}}, nil, false},
		{"stayed ready", Expect{DiskRefused: &ExpectDiskRefused{Never: true}},
			[]FaultRun{{Spec: diskFault[0].Spec, Events: []chaos.Event{diskFault[0].Events[0], diskFault[0].Events[2]}}}, nil, true},
		{"refused under a fault to ride out", Expect{DiskRefused: &ExpectDiskRefused{Never: true}}, diskFault, nil, false},
		{"caught up in time", Expect{CaughtUp: &ExpectWithin{Within: Duration(time.Second)}}, diskFault, caughtUp(3500), true},
		{"caught up too late", Expect{CaughtUp: &ExpectWithin{Within: Duration(time.Second)}}, diskFault, caughtUp(4500), false},
		{"never caught up", Expect{CaughtUp: &ExpectWithin{Within: Duration(time.Second)}}, diskFault, caughtUp(3050)[:1], false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthy(t)
			ev.Faults = tc.faults
			ev.Ext = &ExtEvidence{Samples: tc.samples}
			r, ok := tc.x.checkExt(ev)
			if !ok {
				t.Fatal("not an extension expectation")
			}
			if r.Passed != tc.pass {
				t.Fatalf("passed=%v, want %v (%s %v)", r.Passed, tc.pass, r.Note, r.Violations)
			}
		})
	}
}

func TestDBDiskSpecValidation(t *testing.T) {
	cases := []struct {
		name, doc, err string
	}{
		{"db fault without a database", `name: x
tags: [chaos]
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: db_kill, at: 1s}]
expect: [{availability: {min: 0.5}}]`, "central_db"},
		{"export expectation without a database", `name: x
tags: [chaos]
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: node_stop, target: leader, at: 1s}]
expect: [{export_drained: {within: 1s}}]`, "central_db"},
		{"disk expectation without a disk fault", `name: x
tags: [chaos]
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: node_stop, target: leader, at: 1s}]
expect: [{caught_up: {within: 1s}}]`, "disk fault"},
		{"two expectations in one entry", `name: x
tags: [chaos, central]
topology: {central_db: true}
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: db_kill, at: 1s}]
expect: [{export_drained: {within: 1s}, availability: {min: 0.5}}]`, "exactly one"},
		{"disk fault on a provider", `name: x
tags: [chaos, disk]
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: disk_full, target: psp_a, at: 1s}]
expect: [{disk_refused: {reason: full}}]`, "target"},
		{"slow sync without latency", `name: x
tags: [chaos, disk]
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: disk_slow_sync, target: leader, at: 1s}]
expect: [{availability: {min: 0.5}}]`, "latency"},
		{"valid", `name: x
tags: [chaos, central, disk]
topology: {central_db: true}
traffic: {rate: 1, duration: 2s, mix: {card_pay: 1}}
faults: [{kind: db_flap, at: 1s, stall: 1s, delay: 1s}, {kind: disk_full, target: leader, at: 1s}]
expect: [{export_drained: {within: 1s}}, {disk_refused: {reason: full}}, {caught_up: {within: 1s}}]`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.doc))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("valid scenario refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.err)
			}
		})
	}
}
