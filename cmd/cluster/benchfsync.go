package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// FsyncBenchConfig configures BenchFsync.
type FsyncBenchConfig struct {
	// Dir is where the files go (default: a temp dir); put it on the disk
	// the nodes' data dirs use.
	Dir string
	// Writers append and sync concurrently, one file each (default 3:
	// the raft bench's three nodes share one disk).
	Writers int
	// Bytes is what each writer appends before each sync (default 32 KB:
	// about one synced Save of the raft bench, 110 entries of 300 bytes).
	Bytes    int
	Duration time.Duration // default 5s
}

// BenchFsync measures the disk alone: Writers goroutines each append
// Bytes to a file of their own and fdatasync it (as pebble syncs its WAL),
// in a closed loop, for Duration. Set against the raft bench's "stage
// synced Save" line it tells how much of a Save is the disk and how much
// the process (scheduling, CPU): a Save is one WAL write and one
// fdatasync of about the same size.
func BenchFsync(ctx context.Context, cfg FsyncBenchConfig) (_ BenchResult, err error) {
	if cfg.Writers <= 0 {
		cfg.Writers = 3
	}
	if cfg.Bytes <= 0 {
		cfg.Bytes = 32 << 10
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "txswitch-bench-fsync-"); err != nil {
			return BenchResult{}, err
		}
		defer os.RemoveAll(cfg.Dir)
	} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return BenchResult{}, err
	}
	settings := map[string]string{
		"writers":  strconv.Itoa(cfg.Writers) + ", one file each, closed loop",
		"write":    fmt.Sprintf("%d bytes appended, then fdatasync", cfg.Bytes),
		"dir":      cfg.Dir,
		"duration": cfg.Duration.String(),
	}
	if l := loadAvg(); l != "" {
		settings["load average"] = l + " (at start; the machine may be shared)"
	}
	files := make([]*os.File, cfg.Writers)
	defer func() {
		for _, f := range files {
			if f != nil {
				_ = f.Close()
				_ = os.Remove(f.Name())
			}
		}
	}()
	for i := range files {
		if files[i], err = os.Create(filepath.Join(cfg.Dir, fmt.Sprintf("fsync-%d", i))); err != nil {
			return BenchResult{}, err
		}
	}
	buf := make([]byte, cfg.Bytes)
	for i := range buf {
		buf[i] = byte(i)
	}
	recs := make([]*recorder, cfg.Writers)
	errs := make([]error, cfg.Writers)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i, f := range files {
		recs[i] = newRecorder(maxSamples / cfg.Writers)
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t := time.Now()
				if _, err := f.Write(buf); err != nil {
					errs[i] = fmt.Errorf("write %s: %w", f.Name(), err)
					return
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					errs[i] = fmt.Errorf("fdatasync %s: %w", f.Name(), err)
					return
				}
				recs[i].ok(time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return BenchResult{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return BenchResult{}, err
	}
	res, _ := mergeRecorders("disk write+fdatasync", settings, recs, elapsed)
	res.Extra["MB/s"] = fmt.Sprintf("%.1f", float64(res.Ops)*float64(cfg.Bytes)/elapsed.Seconds()/(1<<20))
	return res, nil
}
