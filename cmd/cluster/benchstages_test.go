package cluster

import (
	"runtime/metrics"
	"testing"
	"time"
)

func TestStage(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	var s stage
	s.events = []stageEvent{{base, ms(10)}, {base.Add(ms(100)), ms(50)}, {base.Add(ms(300)), ms(1)}}
	s.count = 3
	tests := []struct {
		from, to time.Duration
		want     int
	}{
		{0, ms(5), 1},       // inside the first
		{ms(20), ms(90), 0}, // between events
		{ms(140), ms(400), 2},
		{ms(-50), ms(1000), 3},
	}
	for _, tc := range tests {
		if got := s.overlapping(base.Add(tc.from), base.Add(tc.to)); len(got) != tc.want {
			t.Errorf("overlapping(%v, %v) = %d events, want %d", tc.from, tc.to, len(got), tc.want)
		}
	}
	if got, want := s.summary(), "n 3 avg 20.33ms p99 10ms max 50ms"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	instant := stage{events: []stageEvent{{base, 0}, {base, 0}}, count: 2}
	if got, want := instant.summary(), "n 2"; got != want {
		t.Errorf("summary of events without duration = %q, want %q", got, want)
	}
	// Off: nothing is recorded.
	s.record(time.Now())
	if s.n() != 3 {
		t.Errorf("recorded while off: n = %d", s.n())
	}
	s.start()
	s.record(time.Now())
	s.stop()
	if s.n() != 4 {
		t.Errorf("not recorded while on: n = %d", s.n())
	}
}

func TestHistDelta(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, 1}
	h := func(c ...uint64) *metrics.Float64Histogram {
		return &metrics.Float64Histogram{Counts: c, Buckets: buckets}
	}
	tests := []struct {
		before, after *metrics.Float64Histogram
		want          string
	}{
		{h(1, 1, 1, 1), h(1, 1, 1, 1), "n 0"},
		{h(0, 0, 0, 0), h(0, 99, 0, 1), "n 100 p99 <= 10ms max <= 1s"},
		{h(5, 0, 0, 0), h(105, 0, 1, 0), "n 101 p99 <= 1ms max <= 100ms"},
		{nil, h(1, 0, 0, 0), "unavailable"},
	}
	for _, tc := range tests {
		if got := histDelta(tc.before, tc.after); got != tc.want {
			t.Errorf("histDelta = %q, want %q", got, tc.want)
		}
	}
}
