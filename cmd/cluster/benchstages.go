package cluster

import (
	"fmt"
	"io"
	"maps"
	"math"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// maxStageSamples bounds the samples one stage keeps (16 bytes each); past
// it later samples are dropped and the stage's percentiles cover the
// beginning of the run only.
const maxStageSamples = 1 << 16

// stageEvent is one timed occurrence of a stage (a Save, an Apply, a
// pebble flush), kept with its start so slow proposals can be lined up
// against what happened during them.
type stageEvent struct {
	at  time.Time
	dur time.Duration
}

// stage collects the durations of one kind of event on one node. Safe for
// concurrent use; cheap enough for events that happen hundreds of times a
// second (a mutex and an append).
type stage struct {
	mu      sync.Mutex
	on      bool
	events  []stageEvent
	count   int
	dropped int
}

// record adds one event that started at start and ended now, if the stage
// is measuring.
func (s *stage) record(start time.Time) {
	d := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.on {
		return
	}
	s.count++
	if len(s.events) >= maxStageSamples {
		s.dropped++
		return
	}
	s.events = append(s.events, stageEvent{start, d})
}

func (s *stage) measuring() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on
}

func (s *stage) start() {
	s.mu.Lock()
	s.on = true
	s.mu.Unlock()
}

func (s *stage) stop() {
	s.mu.Lock()
	s.on = false
	s.mu.Unlock()
}

// n is the number of events recorded while measuring.
func (s *stage) n() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// summary renders count, average, p99 and max of the kept samples, e.g.
// "n 1200 avg 2.1ms p99 4.1ms max 12ms".
func (s *stage) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == 0 {
		return fmt.Sprintf("n %d", s.count)
	}
	ds := make([]time.Duration, len(s.events))
	var sum time.Duration
	for i, e := range s.events {
		ds[i] = e.dur
		sum += e.dur
	}
	_, _, p99, mx := percentiles(ds)
	if mx == 0 {
		return fmt.Sprintf("n %d", s.count) // events without a duration
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("n %d avg %v p99 %v max %v", s.count, r(sum/time.Duration(len(ds))), r(p99), r(mx))
}

// namedStage is a stage with its label in the report.
type namedStage struct {
	name string
	*stage
}

// reportStages adds one line per stage with every node's summary, and the
// write stall reasons and transport drops when there were any.
func reportStages(res *BenchResult, nodes []*raftBenchNode) {
	if len(nodes) == 0 {
		return
	}
	for j, ns := range nodes[0].stages() {
		var parts []string
		for i, n := range nodes {
			parts = append(parts, fmt.Sprintf("node%d %s", i+1, n.stages()[j].summary()))
		}
		res.Extra["stage "+ns.name] = strings.Join(parts, "; ")
	}
	var reasons, drops, written []string
	for i, n := range nodes {
		n.pebble.mu.Lock()
		written = append(written, fmt.Sprintf("node%d flushed %d MB of memtables into %d MB, compactions wrote %d MB",
			i+1, n.pebble.flushIn>>20, n.pebble.flushOut>>20, n.pebble.compactOut>>20))
		n.pebble.mu.Unlock()
		if r := n.pebble.stallReasons(); r != "" {
			reasons = append(reasons, fmt.Sprintf("node%d %s", i+1, r))
		}
		if st := n.tr.Stats(); st.Dropped+st.ReceiveDropped > 0 {
			drops = append(drops, fmt.Sprintf("node%d sent %d received %d", i+1, st.Dropped, st.ReceiveDropped))
		}
	}
	res.Extra["pebble background writes"] = strings.Join(written, "; ")
	if len(reasons) > 0 {
		res.Extra["pebble stall reasons"] = strings.Join(reasons, "; ")
	}
	if len(drops) > 0 {
		res.Extra["transport drops"] = strings.Join(drops, "; ")
	}
}

// overlapping returns the events that overlap [from, to].
func (s *stage) overlapping(from, to time.Time) []stageEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stageEvent
	for _, e := range s.events {
		if e.at.Before(to) && e.at.Add(e.dur).After(from) {
			out = append(out, e)
		}
	}
	return out
}

// pebbleStages times one DB's background work and write stalls through
// pebble's EventListener.
type pebbleStages struct {
	flush, compaction, stall stage
	walCreated               stage

	mu         sync.Mutex
	flushIn    uint64 // memtable bytes flushed
	flushOut   uint64 // sstable bytes the flushes wrote
	compactOut uint64 // sstable bytes compactions wrote
	stallStart time.Time
	reasons    map[string]int
}

func newPebbleStages() *pebbleStages { return &pebbleStages{reasons: map[string]int{}} }

func (p *pebbleStages) listener() *pebble.EventListener {
	return &pebble.EventListener{
		FlushEnd: func(i pebble.FlushInfo) {
			p.flush.record(time.Now().Add(-i.TotalDuration))
			if !p.flush.measuring() {
				return
			}
			p.mu.Lock()
			p.flushIn += i.InputBytes
			for _, t := range i.Output {
				p.flushOut += t.Size
			}
			p.mu.Unlock()
		},
		CompactionEnd: func(i pebble.CompactionInfo) {
			p.compaction.record(time.Now().Add(-i.TotalDuration))
			if !p.compaction.measuring() {
				return
			}
			p.mu.Lock()
			for _, t := range i.Output.Tables {
				p.compactOut += t.Size
			}
			p.mu.Unlock()
		},
		WALCreated: func(pebble.WALCreateInfo) {
			p.walCreated.record(time.Now())
		},
		WriteStallBegin: func(i pebble.WriteStallBeginInfo) {
			p.mu.Lock()
			p.stallStart = time.Now()
			p.reasons[i.Reason]++
			p.mu.Unlock()
		},
		WriteStallEnd: func() {
			p.mu.Lock()
			start := p.stallStart
			p.mu.Unlock()
			p.stall.record(start)
		},
	}
}

func (p *pebbleStages) all() []*stage {
	return []*stage{&p.flush, &p.compaction, &p.stall, &p.walCreated}
}

// stallReasons renders the write stall reasons seen, "" when none.
func (p *pebbleStages) stallReasons() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(p.reasons)) {
		out = append(out, fmt.Sprintf("%s=%d", k, p.reasons[k]))
	}
	return strings.Join(out, " ")
}

// traceSlow prints, for the slowest proposals, what every node's stages
// did during them (debugging aid).
func traceSlow(w io.Writer, over time.Duration, recs []*recorder, nodes []*raftBenchNode, leader int, sched *stage, from, to time.Time) {
	traceSched(w, nodes, sched, from, to)
	var all []stageEvent
	for _, r := range recs {
		all = append(all, r.slowest...)
	}
	attributeSlow(w, over, all, nodes, leader, sched)
	slices.SortFunc(all, func(a, b stageEvent) int { return int(b.dur - a.dur) })
	traceFlushes(w, nodes)
	// One window per distinct stall: skip proposals overlapping a printed one.
	var printed []stageEvent
	for _, e := range all {
		if len(printed) >= 6 {
			break
		}
		if slices.ContainsFunc(printed, func(p stageEvent) bool {
			return e.at.Before(p.at.Add(p.dur)) && e.at.Add(e.dur).After(p.at)
		}) {
			continue
		}
		printed = append(printed, e)
		from, to := e.at.Add(-20*time.Millisecond), e.at.Add(e.dur)
		fmt.Fprintf(w, "slow proposal %v at %s\n", e.dur.Round(time.Millisecond), e.at.Format("15:04:05.000"))
		for _, se := range sched.overlapping(from, to) {
			fmt.Fprintf(w, "   process run-queue wait        %+5dms  <= %v\n", se.at.Sub(e.at).Milliseconds(), se.dur)
		}
		for i, n := range nodes {
			for _, ns := range n.stages()[:2] {
				// A stage that stops happening is as telling as a slow one.
				evs := ns.overlapping(from, to)
				gap, gapAt := time.Duration(0), from
				prev := from
				for _, se := range append(evs, stageEvent{at: to}) {
					if d := se.at.Sub(prev); d > gap {
						gap, gapAt = d, prev
					}
					if end := se.at.Add(se.dur); end.After(prev) {
						prev = end
					}
				}
				fmt.Fprintf(w, "   node%d %-18s %d events, longest idle %v from %+dms\n", i+1, ns.name, len(evs), gap.Round(time.Millisecond), gapAt.Sub(e.at).Milliseconds())
			}
			for _, ns := range n.stages() {
				for _, se := range ns.overlapping(from, to) {
					if se.dur < 5*time.Millisecond && ns.stage != &n.pebble.walCreated {
						continue // the usual: only what may explain a stall
					}
					fmt.Fprintf(w, "   node%d %-18s %+5dms  %v\n", i+1, ns.name, se.at.Sub(e.at).Milliseconds(), se.dur.Round(100*time.Microsecond))
				}
			}
		}
	}
}

// runtimeHist reads one runtime/metrics histogram (cumulative since the
// process started).
func runtimeHist(name string) *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	return s[0].Value.Float64Histogram()
}

// histDelta summarises the observations of a runtime histogram between two
// reads: count, the bucket holding the 99th percentile and the highest
// non-empty bucket (upper bounds; the runtime keeps no exact values).
func histDelta(before, after *metrics.Float64Histogram) string {
	if before == nil || after == nil || len(before.Counts) != len(after.Counts) {
		return "unavailable"
	}
	counts := make([]uint64, len(after.Counts))
	var total uint64
	for i := range counts {
		counts[i] = after.Counts[i] - before.Counts[i]
		total += counts[i]
	}
	if total == 0 {
		return "n 0"
	}
	upper := func(i int) time.Duration {
		b := after.Buckets[i+1]
		if math.IsInf(b, 1) {
			b = after.Buckets[i]
		}
		return time.Duration(b * float64(time.Second))
	}
	var p99, mx time.Duration
	var seen uint64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		seen += c
		if p99 == 0 && float64(seen) >= 0.99*float64(total) {
			p99 = upper(i)
		}
		mx = upper(i)
	}
	return fmt.Sprintf("n %d p99 <= %v max <= %v", total, p99.Round(time.Microsecond), mx.Round(time.Microsecond))
}

// traceFlushes compares the synced Saves that overlapped a pebble flush
// (of any node: they share the disk) with the others.
func traceFlushes(w io.Writer, nodes []*raftBenchNode) {
	var flushes []stageEvent
	for _, n := range nodes {
		flushes = append(flushes, n.pebble.flush.overlapping(time.Time{}, time.Now())...)
	}
	for i, n := range nodes {
		var during, other []time.Duration
		for _, e := range n.logs.saves.overlapping(time.Time{}, time.Now()) {
			if slices.ContainsFunc(flushes, func(f stageEvent) bool {
				return e.at.Before(f.at.Add(f.dur)) && e.at.Add(e.dur).After(f.at)
			}) {
				during = append(during, e.dur)
			} else {
				other = append(other, e.dur)
			}
		}
		_, _, p99d, maxd := percentiles(during)
		_, _, p99o, maxo := percentiles(other)
		fmt.Fprintf(w, "node%d synced Save during a flush: n %d p99 %v max %v; otherwise: n %d p99 %v max %v\n",
			i+1, len(during), p99d.Round(100*time.Microsecond), maxd.Round(100*time.Microsecond),
			len(other), p99o.Round(100*time.Microsecond), maxo.Round(100*time.Microsecond))
	}
}

// schedSampler watches the runtime's run-queue wait histogram and records,
// for every interval in which some goroutine waited at least threshold for
// a P, one event at the interval's start lasting the longest wait seen (a
// bucket's upper bound). It tells CPU starvation of the process apart from
// a stage that is slow by itself.
func schedSampler(s *stage, every, threshold time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := runtimeHist("/sched/latencies:seconds")
	at := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		cur := runtimeHist("/sched/latencies:seconds")
		if prev == nil || cur == nil {
			return
		}
		for i := len(cur.Counts) - 1; i >= 0; i-- {
			if cur.Counts[i] == prev.Counts[i] {
				continue
			}
			upper := cur.Buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = cur.Buckets[i]
			}
			if d := time.Duration(upper * float64(time.Second)); d >= threshold {
				s.mu.Lock()
				if s.on && len(s.events) < maxStageSamples {
					s.count++
					s.events = append(s.events, stageEvent{at, d})
				}
				s.mu.Unlock()
			}
			break
		}
		prev, at = cur, time.Now()
	}
}

// traceSched compares how often goroutines waited long for a P while some
// node's pebble flush or compaction ran and while none did.
func traceSched(w io.Writer, nodes []*raftBenchNode, sched *stage, from, to time.Time) {
	var bg []stageEvent
	for _, n := range nodes {
		bg = append(bg, n.pebble.flush.overlapping(from, to)...)
		bg = append(bg, n.pebble.compaction.overlapping(from, to)...)
	}
	inBG := func(t time.Time) bool {
		return slices.ContainsFunc(bg, func(b stageEvent) bool { return !t.Before(b.at) && t.Before(b.at.Add(b.dur)) })
	}
	// Time covered by background work, sampled every millisecond.
	var covered, total time.Duration
	for t := from; t.Before(to); t = t.Add(time.Millisecond) {
		total += time.Millisecond
		if inBG(t) {
			covered += time.Millisecond
		}
	}
	var in, out []time.Duration
	for _, e := range sched.overlapping(from, to) {
		if inBG(e.at) {
			in = append(in, e.dur)
		} else {
			out = append(out, e.dur)
		}
	}
	rate := func(n int, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	_, _, _, maxIn := percentiles(in)
	_, _, _, maxOut := percentiles(out)
	fmt.Fprintf(w, "run-queue waits >= threshold: %.1f/s (max %v) during %v of pebble flush/compaction, %.1f/s (max %v) during the other %v\n",
		rate(len(in), covered), maxIn, covered.Round(time.Millisecond), rate(len(out), total-covered), maxOut, (total - covered).Round(time.Millisecond))
}

// maxAttributed bounds the slow proposals attributeSlow checks.
const maxAttributed = 2000

// attributeSlow counts, for the proposals slower than over, what
// overlapped them: each cause is counted independently, so a proposal may
// count under several, and "none" under no other.
func attributeSlow(w io.Writer, over time.Duration, slow []stageEvent, nodes []*raftBenchNode, leader int, sched *stage) {
	type cause struct {
		name string
		hit  func(from, to time.Time) bool
	}
	longer := func(s *stage, d time.Duration) func(from, to time.Time) bool {
		return func(from, to time.Time) bool {
			return slices.ContainsFunc(s.overlapping(from, to), func(e stageEvent) bool { return e.dur >= d })
		}
	}
	anyNode := func(pick func(n *raftBenchNode) *stage, d time.Duration) func(from, to time.Time) bool {
		return func(from, to time.Time) bool {
			return slices.ContainsFunc(nodes, func(n *raftBenchNode) bool { return longer(pick(n), d)(from, to) })
		}
	}
	ld := nodes[leader]
	causes := []cause{
		{"leader synced Save >= 20ms", longer(&ld.logs.saves, 20*time.Millisecond)},
		{"follower synced Save >= 20ms", func(from, to time.Time) bool {
			for i, n := range nodes {
				if i != leader && longer(&n.logs.saves, 20*time.Millisecond)(from, to) {
					return true
				}
			}
			return false
		}},
		{"leader Apply >= 10ms", longer(&ld.apply.applies, 10*time.Millisecond)},
		{"pebble flush (any node)", anyNode(func(n *raftBenchNode) *stage { return &n.pebble.flush }, 0)},
		{"pebble compaction (any node)", anyNode(func(n *raftBenchNode) *stage { return &n.pebble.compaction }, 0)},
		{"snapshot sync/record (any node)", func(from, to time.Time) bool {
			return anyNode(func(n *raftBenchNode) *stage { return &n.apply.syncs }, 0)(from, to) ||
				anyNode(func(n *raftBenchNode) *stage { return &n.apply.images }, 0)(from, to) ||
				anyNode(func(n *raftBenchNode) *stage { return &n.logs.records }, 0)(from, to)
		}},
		{"run-queue wait >= 20ms", longer(sched, 20*time.Millisecond)},
	}
	// Each check scans a stage's events: attribute an even sample when
	// there are many slow proposals.
	if k := len(slow)/maxAttributed + 1; k > 1 {
		slices.SortFunc(slow, func(a, b stageEvent) int { return a.at.Compare(b.at) })
		sample := slow[:0:0]
		for i := 0; i < len(slow); i += k {
			sample = append(sample, slow[i])
		}
		fmt.Fprintf(w, "(attributing every %dth of %d slow proposals)\n", k, len(slow))
		slow = sample
	}
	counts := make([]int, len(causes))
	none := 0
	for _, e := range slow {
		hit := false
		for i, c := range causes {
			if c.hit(e.at, e.at.Add(e.dur)) {
				counts[i]++
				hit = true
			}
		}
		if !hit {
			none++
		}
	}
	fmt.Fprintf(w, "%d proposals took >= %v; overlapping them:\n", len(slow), over)
	pct := func(n int) float64 { return 100 * float64(n) / float64(max(len(slow), 1)) }
	for i, c := range causes {
		fmt.Fprintf(w, "  %-34s %6d (%.0f%%)\n", c.name, counts[i], pct(counts[i]))
	}
	fmt.Fprintf(w, "  %-34s %6d (%.0f%%)\n", "none of these", none, pct(none))
}
