package scenarios

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// checkCentralExactlyOnce judges PostgreSQL's own tables, read after the
// export drained (DESIGN invariant 5): every outbox event exactly once and
// none missing (exported_event_log holds seq 1..head, each once, under as
// many distinct ids), and the resource tables hold what the client was
// told and what every node serves: each acknowledged order, payment and
// refund present with its acknowledged amount, and each payment and order
// in its final status with the final captured and refunded amounts.
func checkCentralExactlyOnce(ev *Evidence) CheckResult {
	name := CheckCentralExactlyOnce
	if ev.Ext == nil || ev.Ext.Central == nil {
		return result(name, "", []string{"no evidence from PostgreSQL was collected"})
	}
	c := ev.Ext.Central
	if c.Err != "" {
		return result(name, "", []string{"reading PostgreSQL failed: " + c.Err})
	}
	var v []string
	e, head := c.Events, int64(c.Head)
	switch {
	case head == 0:
		v = append(v, "the outbox head is 0: nothing was exported, the check would judge nothing")
	case e.Count != head || e.DistinctIDs != head || e.DistinctSeqs != head || e.Min != 1 || e.Max != head:
		v = append(v, fmt.Sprintf("exported_event_log: %d rows, %d distinct ids, %d distinct seqs, seq %d..%d; want each of 1..%d (the outbox head) once",
			e.Count, e.DistinctIDs, e.DistinctSeqs, e.Min, e.Max, head))
	}
	if len(c.Gaps) > 0 {
		v = append(v, fmt.Sprintf("exported event seqs missing (first %d): %v", len(c.Gaps), c.Gaps))
	}
	if c.DrainedAt.IsZero() {
		v = append(v, fmt.Sprintf("PostgreSQL never held all %d events within %v after the settle", head, drainLimit))
	}
	judged := 0
	view := ev.view()
	for i := range ev.Calls {
		call := &ev.Calls[i]
		if !call.Acked() || call.Method == "GET" {
			continue
		}
		switch call.Op {
		case "create_order":
			var o txswitch.Order
			if json.Unmarshal(call.Body, &o) != nil || o.ID == "" {
				continue
			}
			judged++
			row, ok := c.Orders[o.ID]
			switch {
			case !ok:
				v = append(v, fmt.Sprintf("order %s acknowledged (call #%d) is not in PostgreSQL", o.ID, call.Seq))
			case row.Amount != o.Amount.Value:
				v = append(v, fmt.Sprintf("order %s: PostgreSQL amount %d, acknowledged %d (call #%d)", o.ID, row.Amount, o.Amount.Value, call.Seq))
			}
		case "create_payment":
			var p txswitch.Payment
			if json.Unmarshal(call.Body, &p) != nil || p.ID == "" {
				continue
			}
			judged++
			row, ok := c.Payments[p.ID]
			switch {
			case !ok:
				v = append(v, fmt.Sprintf("payment %s acknowledged %s (call #%d) is not in PostgreSQL", p.ID, p.Status, call.Seq))
			case row.Amount != p.Amount.Value || row.Order != p.OrderID:
				v = append(v, fmt.Sprintf("payment %s: PostgreSQL amount %d of order %s, acknowledged %d of %s (call #%d)",
					p.ID, row.Amount, row.Order, p.Amount.Value, p.OrderID, call.Seq))
			}
		case "refund":
			var r txswitch.Refund
			if json.Unmarshal(call.Body, &r) != nil || r.ID == "" {
				continue
			}
			judged++
			row, ok := c.Refunds[r.ID]
			switch {
			case !ok:
				v = append(v, fmt.Sprintf("refund %s acknowledged %s (call #%d) is not in PostgreSQL", r.ID, r.Status, call.Seq))
			case row.Amount != r.Amount.Value || row.Payment != r.PaymentID:
				v = append(v, fmt.Sprintf("refund %s: PostgreSQL %d of %s, acknowledged %d of %s (call #%d)",
					r.ID, row.Amount, row.Payment, r.Amount.Value, r.PaymentID, call.Seq))
			case r.Status == "succeeded" && row.Status != "succeeded":
				v = append(v, fmt.Sprintf("refund %s acknowledged succeeded is %s in PostgreSQL", r.ID, row.Status))
			}
		}
	}
	// The final state every node serves is the state PostgreSQL must hold
	// once the export caught up.
	ids := make([]string, 0, len(view))
	for id := range view {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		o := view[id]
		if row, ok := c.Orders[id]; ok && (row.Status != o.Status || row.Captured != o.Captured.Value || row.Refunded != o.Refunded.Value) {
			v = append(v, fmt.Sprintf("order %s: PostgreSQL %s captured %d refunded %d; the nodes serve %s captured %d refunded %d",
				id, row.Status, row.Captured, row.Refunded, o.Status, o.Captured.Value, o.Refunded.Value))
		}
		for _, p := range o.Payments {
			row, ok := c.Payments[p.ID]
			switch {
			case !ok:
				v = append(v, fmt.Sprintf("payment %s (%s on the nodes) is not in PostgreSQL", p.ID, p.Status))
			case row.Status != p.Status || row.Captured != p.Captured.Value || row.Refunded != p.Refunded.Value:
				v = append(v, fmt.Sprintf("payment %s: PostgreSQL %s captured %d refunded %d; the nodes serve %s captured %d refunded %d",
					p.ID, row.Status, row.Captured, row.Refunded, p.Status, p.Captured.Value, p.Refunded.Value))
			}
		}
	}
	if judged == 0 {
		v = append(v, "no acknowledged write to look for in PostgreSQL")
	}
	if len(v) > 20 {
		v = append(v[:20], fmt.Sprintf("... and %d more", len(v)-20))
	}
	return result(name, fmt.Sprintf("%d events (head %d), %d acknowledged writes, %d orders against PostgreSQL's tables",
		e.Count, head, judged, len(view)), v)
}

// faultWindow is when the faults matching kind were on: the first
// successful injection to the last undo.
func (ev *Evidence) faultWindow(match func(kind string) bool) (from, to time.Time, ok bool) {
	for _, f := range ev.Faults {
		if !match(f.Spec.Kind) {
			continue
		}
		for _, e := range f.Events {
			switch {
			case e.Action == "inject" && e.Err == "" && (from.IsZero() || e.At.Before(from)):
				from = e.At
			case e.Action == "undo" && e.At.After(to):
				to = e.At
			}
		}
	}
	return from, to, !from.IsZero() && !to.IsZero()
}

func (ev *Evidence) samples() []ExtSample {
	if ev.Ext == nil {
		return nil
	}
	return ev.Ext.Samples
}

// expectExportLag: the outage was visible in the leader's export status.
func expectExportLag(ev *Evidence, x ExpectExportLag) CheckResult {
	name := "export_lag"
	from, to, ok := ev.faultWindow(isDBFault)
	if !ok {
		return result(name, "", []string{"no central database fault was injected and undone"})
	}
	var maxLag uint64
	failing, seen := "", 0
	for _, s := range ev.samples() {
		if s.At.Before(from) || s.At.After(to) || s.Export == nil {
			continue
		}
		seen++
		maxLag = max(maxLag, s.Export.LagEvents)
		if failing == "" && (s.Export.LastError != "" || s.Export.BreakerState != "closed") {
			failing = fmt.Sprintf("breaker %s, last error %q after %v", s.Export.BreakerState, clipString(s.Export.LastError, 120), s.At.Sub(from).Round(time.Millisecond))
		}
	}
	var v []string
	if maxLag < x.MinEvents {
		v = append(v, fmt.Sprintf("the leader's export lag peaked at %d events during the fault (%d samples); want >= %d", maxLag, seen, x.MinEvents))
	}
	if x.Failing && failing == "" {
		v = append(v, fmt.Sprintf("the leader's export status never showed a failure during the fault (%d samples)", seen))
	}
	return result(name, fmt.Sprintf("lag peaked at %d events; %s", maxLag, failing), v)
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// expectExportDrained: the backlog the leader held when the database came
// back (its outbox head then) was exported within Within: the replicated
// watermark, which only moves after PostgreSQL committed (and which
// central_exactly_once checks against PostgreSQL's rows), reached it.
func expectExportDrained(ev *Evidence, x ExpectWithin) CheckResult {
	name := "export_drained"
	start, back, ok := ev.faultWindow(isDBFault)
	if !ok {
		return result(name, "", []string{"no central database fault was injected and undone"})
	}
	var head, wmAtBack, maxBacklog uint64
	for _, s := range ev.samples() {
		if s.Export != nil && !s.At.After(back) {
			head = max(head, s.Export.LastSeq)
			wmAtBack = s.Export.Watermark
			if !s.At.Before(start) && s.Export.LastSeq > s.Export.Watermark {
				maxBacklog = max(maxBacklog, s.Export.LastSeq-s.Export.Watermark)
			}
		}
	}
	if head == 0 {
		return result(name, "", []string{"no export status sampled before the database came back"})
	}
	if wmAtBack >= head {
		if maxBacklog > 0 {
			// A slow (not failing) database: the export lagged during the
			// fault and had caught up by its end.
			return result(name, fmt.Sprintf("a backlog of up to %d events during the fault, drained before the database came back", maxBacklog), nil)
		}
		return result(name, "", []string{fmt.Sprintf("no backlog during the fault, nor when the database came back (watermark %d, head %d): nothing to drain", wmAtBack, head)})
	}
	for _, s := range ev.samples() {
		if s.Export != nil && s.At.After(back) && s.Export.Watermark >= head {
			took := s.At.Sub(back)
			note := fmt.Sprintf("backlog of %d events (to seq %d) exported %v after the database came back", head-wmAtBack, head, took.Round(time.Millisecond))
			if took > x.Within.D() {
				return result(name, note, []string{fmt.Sprintf("drained after %v; want within %v", took.Round(time.Millisecond), x.Within.D())})
			}
			return result(name, note, nil)
		}
	}
	return result(name, "", []string{fmt.Sprintf("the watermark never reached %d (the head when the database came back, watermark then %d) while sampled", head, wmAtBack)})
}

// expectDiskRefused: the node under a disk error fault refused readiness
// and named the storage failure and Reason.
func expectDiskRefused(ev *Evidence, x ExpectDiskRefused) CheckResult {
	name := "disk_refused"
	var seen []string
	faults := 0
	for _, f := range ev.Faults {
		if !isDiskFault(f.Spec.Kind) {
			continue
		}
		faults++
		for _, e := range f.Events {
			if e.Action != "observed" {
				continue
			}
			seen = append(seen, e.Detail)
			if !x.Never && strings.Contains(e.Detail, "storage failed") && strings.Contains(e.Detail, x.Reason) {
				return result(name, fmt.Sprintf("%s: %s", e.Target, clipString(e.Detail, 300)), nil)
			}
		}
	}
	if x.Never {
		if faults == 0 {
			return result(name, "", []string{"no disk fault to judge"})
		}
		if len(seen) > 0 {
			return result(name, "", []string{fmt.Sprintf("the node refused readiness under a fault it should ride out: %q", seen)})
		}
		return result(name, fmt.Sprintf("stayed ready under %d disk fault(s)", faults), nil)
	}
	if len(seen) == 0 {
		return result(name, "", []string{"the node under the disk fault never refused readiness"})
	}
	return result(name, "", []string{fmt.Sprintf("the node refused without naming the storage failure and %q: %q", x.Reason, seen)})
}

// expectCaughtUp: the node a disk fault restarted applied, within Within
// of its restart, everything the leader had committed at the restart.
func expectCaughtUp(ev *Evidence, x ExpectWithin) CheckResult {
	name := "caught_up"
	var notes, v []string
	judged := 0
	for _, f := range ev.Faults {
		if !isDiskFault(f.Spec.Kind) {
			continue
		}
		var back time.Time
		target := ""
		for _, e := range f.Events {
			if e.Action == "undo" && e.Err == "" {
				back, target = e.At, e.Target
			}
		}
		var id uint64
		if _, err := fmt.Sscanf(target, "n%d", &id); err != nil || back.IsZero() {
			v = append(v, fmt.Sprintf("%s: no restart recorded (target %q)", f.Spec.Kind, target))
			continue
		}
		judged++
		took, ok := catchUp(ev.samples(), back, id)
		switch {
		case !ok:
			v = append(v, fmt.Sprintf("node %d never applied the leader's commit index of its restart while sampled", id))
		case took > x.Within.D():
			v = append(v, fmt.Sprintf("node %d caught up %v after its restart; want within %v", id, took.Round(time.Millisecond), x.Within.D()))
		default:
			notes = append(notes, fmt.Sprintf("node %d caught up %v after its restart", id, took.Round(time.Millisecond)))
		}
	}
	if judged == 0 && len(v) == 0 {
		v = append(v, "no disk fault to judge")
	}
	return result(name, strings.Join(notes, "; "), v)
}

// catchUp finds when node id, after back, applied the commit index the
// leader had at the first sample after back.
func catchUp(samples []ExtSample, back time.Time, id uint64) (time.Duration, bool) {
	var target uint64
	for _, s := range samples {
		if !s.At.After(back) {
			continue
		}
		if target == 0 {
			for _, n := range s.Nodes {
				if n.Leader && !n.Stopped && n.ID != id {
					target = n.Commit
				}
			}
			continue
		}
		for _, n := range s.Nodes {
			if n.ID == id && !n.Stopped && n.Applied >= target {
				return s.At.Sub(back), true
			}
		}
	}
	return 0, false
}
