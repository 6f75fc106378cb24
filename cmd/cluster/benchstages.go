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
	var reasons, drops []string
	for i, n := range nodes {
		if r := n.pebble.stallReasons(); r != "" {
			reasons = append(reasons, fmt.Sprintf("node%d %s", i+1, r))
		}
		if st := n.tr.Stats(); st.Dropped+st.ReceiveDropped > 0 {
			drops = append(drops, fmt.Sprintf("node%d sent %d received %d", i+1, st.Dropped, st.ReceiveDropped))
		}
	}
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
	stallStart time.Time
	reasons    map[string]int
}

func newPebbleStages() *pebbleStages { return &pebbleStages{reasons: map[string]int{}} }

func (p *pebbleStages) listener() *pebble.EventListener {
	return &pebble.EventListener{
		FlushEnd: func(i pebble.FlushInfo) {
			p.flush.record(time.Now().Add(-i.TotalDuration))
		},
		CompactionEnd: func(i pebble.CompactionInfo) {
			p.compaction.record(time.Now().Add(-i.TotalDuration))
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
func traceSlow(w io.Writer, recs []*recorder, nodes []*raftBenchNode) {
	var all []stageEvent
	for _, r := range recs {
		all = append(all, r.slowest...)
	}
	slices.SortFunc(all, func(a, b stageEvent) int { return int(b.dur - a.dur) })
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
		for i, n := range nodes {
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
