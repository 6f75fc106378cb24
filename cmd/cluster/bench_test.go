package cluster

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	benchDuration  = flag.Duration("cluster.bench.duration", 10*time.Second, "measured period of BenchmarkRaftPropose and BenchmarkPayments (per b.N iteration)")
	benchSnapEvery = flag.Uint64("cluster.bench.snapshot-every", 0, "SnapshotEvery of BenchmarkRaftPropose (0: consensus' default)")
	benchClients   = flag.Int("cluster.bench.clients", 512, "HTTP clients of BenchmarkPayments")
)

// The benchmarks run one BenchRaft / BenchPayments per iteration and
// report its throughput and latency percentiles as custom metrics; run
// them with -benchtime 1x (each iteration lasts -cluster.bench.duration).

func reportBench(b *testing.B, res BenchResult) {
	b.Helper()
	// b.Log truncates benchmark output: print the whole report.
	fmt.Println(res.String())
	b.ReportMetric(res.OpsPerSec, "ops/s")
	b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.Max.Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(res.CPUPerOp.Microseconds()), "cpu-us/op")
	if res.DBCPUPerOp > 0 {
		b.ReportMetric(float64(res.DBCPUPerOp.Microseconds()), "db-cpu-us/op")
	}
	errs := 0
	for _, n := range res.Errors {
		errs += n
	}
	b.ReportMetric(float64(errs), "errors")
}

func BenchmarkRaftPropose(b *testing.B) {
	for b.Loop() {
		res, err := BenchRaft(context.Background(), RaftBenchConfig{Dir: b.TempDir(), Duration: *benchDuration, SnapshotEvery: *benchSnapEvery})
		if err != nil {
			b.Fatal(err)
		}
		reportBench(b, res)
	}
}

func BenchmarkPayments(b *testing.B) {
	TuneGC() // as txswitch bench and a node run
	cases := []struct {
		name    string
		latency time.Duration
		clients int
		target  string
	}{
		{"latency0/leader", 0, *benchClients, TargetLeader},
		{"latency0/all", 0, *benchClients, TargetAll},
		{"latency100ms/leader", 100 * time.Millisecond, 2000, TargetLeader},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				res, err := BenchPayments(context.Background(), PaymentsBenchConfig{Dir: b.TempDir(),
					Clients: tc.clients, Duration: *benchDuration, ProviderLatency: tc.latency, Target: tc.target})
				if err != nil {
					b.Fatal(err)
				}
				reportBench(b, res)
			}
		})
	}
}

// TestBenchmarksRunCorrectly runs both benchmarks briefly with few clients
// and checks only their correctness: work was done, and nothing failed
// (every proposal applied exactly once, every payment captured). Speed is
// not asserted.
func TestBenchmarksRunCorrectly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters on disk")
	}
	ctx := context.Background()
	t.Run("raft", func(t *testing.T) {
		var trace bytes.Buffer
		res, err := BenchRaft(ctx, RaftBenchConfig{Dir: t.TempDir(), Proposers: 8, PayloadBytes: 64,
			Duration: time.Second, Warmup: 200 * time.Millisecond, SnapshotEvery: 500, TraceSlow: &trace, SlowOver: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + res.String() + trace.String())
		if res.Ops == 0 || len(res.Errors) != 0 {
			t.Fatalf("ops %d, errors %v", res.Ops, res.Errors)
		}
		// Snapshots go through SyncState (a record), never a state image.
		if st := res.Extra["stage snapshot state sync"]; strings.HasPrefix(st, "node1 n 0") {
			t.Errorf("stage snapshot state sync = %q: no snapshot in %d proposals with SnapshotEvery 500", st, res.Ops)
		}
		if st := res.Extra["stage snapshot state image"]; st != "node1 n 0; node2 n 0; node3 n 0" {
			t.Errorf("stage snapshot state image = %q: want no image (no follower needed one)", st)
		}
		// Every proposal is slower than SlowOver's 1ns: the trace must
		// attribute some.
		if m := regexp.MustCompile(`(\d+) proposals took >= 1ns`).FindStringSubmatch(trace.String()); m == nil || m[1] == "0" {
			t.Errorf("trace attributes no proposal slower than 1ns:\n%s", trace.String())
		}
		if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
			t.Fatalf("percentiles out of order: %v %v %v", res.P50, res.P99, res.Max)
		}
	})
	// Paced: the schedule, not the cluster, sets the rate (a closed loop of
	// 8 proposers does thousands per second here).
	t.Run("raft/paced", func(t *testing.T) {
		const rate = 300
		midways := 0
		res, err := BenchRaft(ctx, RaftBenchConfig{Dir: t.TempDir(), Proposers: 8, PayloadBytes: 64,
			Duration: time.Second, Warmup: 200 * time.Millisecond, Rate: rate, Midway: func() { midways++ }})
		if err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + res.String())
		if midways != 1 {
			t.Errorf("Midway called %d times, want once", midways)
		}
		if res.Ops == 0 || len(res.Errors) != 0 {
			t.Fatalf("ops %d, errors %v", res.Ops, res.Errors)
		}
		if res.OpsPerSec > 1.5*rate {
			t.Errorf("%.0f proposals/s paced to %d/s", res.OpsPerSec, rate)
		}
		if !strings.Contains(res.Settings["proposers"], "paced to 300 proposals/s") {
			t.Errorf("settings do not say the run was paced: %q", res.Settings["proposers"])
		}
	})
	t.Run("fsync", func(t *testing.T) {
		dir := t.TempDir()
		res, err := BenchFsync(ctx, FsyncBenchConfig{Dir: dir, Writers: 2, Bytes: 4096, Duration: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + res.String())
		if res.Ops == 0 || len(res.Errors) != 0 || res.P50 <= 0 || res.P50 > res.Max {
			t.Fatalf("ops %d, errors %v, p50 %v, max %v", res.Ops, res.Errors, res.P50, res.Max)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("left %d files in %s", len(left), dir)
		}
	})
	for _, target := range []string{TargetLeader, TargetAll} {
		t.Run("payments/"+target, func(t *testing.T) {
			midways := 0
			res, err := BenchPayments(ctx, PaymentsBenchConfig{Dir: t.TempDir(), Clients: 4,
				Duration: time.Second, Warmup: 200 * time.Millisecond, Target: target, Midway: func() { midways++ }})
			if err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + res.String())
			if midways != 1 {
				t.Errorf("Midway called %d times, want once", midways)
			}
			if res.Ops == 0 || len(res.Errors) != 0 {
				t.Fatalf("ops %d, errors %v", res.Ops, res.Errors)
			}
		})
	}
}

func TestMeasureCallsMidwayOnce(t *testing.T) {
	calls := 0
	if err := measure(context.Background(), 20*time.Millisecond, func() { calls++ }); err != nil || calls != 1 {
		t.Fatalf("measure = %v with %d midway calls; want nil and 1", err, calls)
	}
	if err := measure(context.Background(), time.Millisecond, nil); err != nil {
		t.Fatalf("measure without midway = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	if err := measure(ctx, time.Hour, func() { calls++ }); !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("cancelled measure = %v with %d midway calls; want context.Canceled and none", err, calls)
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in                 []time.Duration
		p50, p90, p99, max time.Duration
	}{
		{nil, 0, 0, 0, 0},
		{ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 5 * time.Millisecond, 9 * time.Millisecond, 9 * time.Millisecond, 10 * time.Millisecond},
	}
	for _, tc := range tests {
		p50, p90, p99, mx := percentiles(tc.in)
		if p50 != tc.p50 || p90 != tc.p90 || p99 != tc.p99 || mx != tc.max {
			t.Errorf("percentiles(%v) = %v %v %v %v; want %v %v %v %v", tc.in, p50, p90, p99, mx, tc.p50, tc.p90, tc.p99, tc.max)
		}
	}
}
