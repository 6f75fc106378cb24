package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
)

func init() {
	register("bench", "measure committed proposals/s and payments/s on a local 3-node cluster (fsync on)", runBench)
}

func runBench(args []string) error {
	fs := newFlags("bench", "[--what raft,payments,payments-slow] [--duration D]")
	what := fs.String("what", "raft,payments,payments-slow", "comma-separated: raft (proposals), payments (0 ms PSP latency), payments-slow (100 ms PSP latency), fsync (the disk alone: 3 writers appending 32 KB and fdatasync, to set against the raft bench's synced Save)")
	duration := fs.Duration("duration", 10*time.Second, "measured period of each benchmark (after a warm-up)")
	dir := fs.String("dir", "", "where the data dirs go (default: a temp dir; use a real disk, fsync is on)")
	proposers := fs.Int("proposers", 256, "concurrent proposers (raft)")
	payload := fs.Int("payload", 256, "proposal size in bytes (raft)")
	traceSlow := fs.Bool("trace-slow", false, "raft: print, for the slowest proposals, what each node's Save, Apply, snapshot and pebble flush/compaction/stall did meanwhile (stderr)")
	slowOver := fs.Duration("slow-over", cluster.DefaultSlowOver, "raft, with --trace-slow: the latency from which a proposal counts as slow")
	snapEvery := fs.Uint64("snapshot-every", 0, "raft: applied entries between snapshots (0: the consensus default)")
	rate := fs.Float64("rate", 0, "raft: pace the proposers to this many proposals/s in total, latency counted from each scheduled send (0: closed loop, latency at saturation)")
	clients := fs.Int("clients", 512, "concurrent HTTP clients (payments)")
	slowClients := fs.Int("slow-clients", 2000, "concurrent HTTP clients (payments-slow)")
	target := fs.String("target", cluster.TargetLeader, "payments: send to the leader, or to all nodes (followers forward)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (every node, PSP and client share the process) to this file")
	memProfile := fs.String("memprofile", "", "raft and payments: write each benchmark's in-use heap, taken halfway through its measured period (after a forced GC, which the figures then include), to this file with the benchmark's name appended (F.raft, F.payments, ...)")
	procs := fs.Int("gomaxprocs", 0, "Go scheduler Ps of the bench process: 0 = 3 x the CPUs (each of the 3 nodes gets the Ps a machine of its own would give it), unless $GOMAXPROCS is set; -1 = Go's default")
	if err := parse(fs, args); err != nil {
		return err
	}
	// The three nodes share one Go scheduler here. With Go's default (one
	// P per CPU) a node's pebble flush or compaction holds a P for up to
	// the 10 ms preemption slice while another node's Ready loop waits in
	// the run queue behind it: a wait no node on a machine of its own
	// would see (it tripled the raft p99). More Ps than CPUs hand that
	// sharing to the kernel's scheduler, which slices finer; the cores
	// stay the same two, and the report states the setting.
	switch {
	case *procs > 0:
		runtime.GOMAXPROCS(*procs)
	case *procs == 0 && os.Getenv("GOMAXPROCS") == "":
		runtime.GOMAXPROCS(3 * runtime.NumCPU())
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, w := range strings.Split(*what, ",") {
		var res cluster.BenchResult
		w = strings.TrimSpace(w)
		fmt.Fprintf(os.Stderr, "running %s for %s...\n", w, *duration)
		dir, err := benchDir(*dir, w)
		if err != nil {
			return err
		}
		var midway func()
		var heapErr error
		if *memProfile != "" {
			midway = func() { heapErr = writeHeapProfile(*memProfile + "." + w) }
		}
		switch w {
		case "raft":
			rc := cluster.RaftBenchConfig{Dir: dir, Proposers: *proposers, PayloadBytes: *payload, Duration: *duration, SnapshotEvery: *snapEvery, Rate: *rate, Midway: midway}
			if *traceSlow {
				rc.TraceSlow = os.Stderr
				rc.SlowOver = *slowOver
			}
			res, err = cluster.BenchRaft(ctx, rc)
		case "payments":
			res, err = cluster.BenchPayments(ctx, cluster.PaymentsBenchConfig{Dir: dir, Clients: *clients, Duration: *duration, Target: *target, Midway: midway})
		case "payments-slow":
			res, err = cluster.BenchPayments(ctx, cluster.PaymentsBenchConfig{Dir: dir, Clients: *slowClients, Duration: *duration,
				ProviderLatency: 100 * time.Millisecond, Target: *target, Midway: midway})
		case "fsync":
			res, err = cluster.BenchFsync(ctx, cluster.FsyncBenchConfig{Dir: dir, Duration: *duration})
		default:
			return fmt.Errorf("unknown benchmark %q: %w", w, errUsage)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
		fmt.Println(res.String())
		if heapErr != nil {
			return fmt.Errorf("%s: %w", w, heapErr)
		}
	}
	return nil
}

// writeHeapProfile writes the in-use heap to path after a GC, so that the
// profile shows what is live rather than what the last cycle left.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return nil
}

// benchDir is where benchmark w keeps its nodes' data under --dir: a
// directory of its own, which must not hold data yet. Two benchmarks in
// one dir would start the second cluster on the first one's raft state
// (other ports, other members), which never elects a leader. "" (no
// --dir) lets each benchmark make and remove a temp dir.
func benchDir(base, w string) (string, error) {
	if base == "" {
		return "", nil
	}
	dir := filepath.Join(base, w)
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return "", fmt.Errorf("%s: --dir %s already holds %s from an earlier run: give an empty --dir", w, base, dir)
	}
	return dir, nil
}
