package txswitch_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuClock measures process CPU time (user+system, all threads, GC
// included) over the timed parts of a benchmark. On a shared machine wall
// time per op swings with other people's load; CPU time per op is what a
// payment costs and stays comparable.
type cpuClock struct {
	total time.Duration
	from  time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) start() { c.from = processCPU() }
func (c *cpuClock) stop()  { c.total += processCPU() - c.from }

// report adds cpu-ns/op (per unit, e.g. per command, when units > 1).
func (c *cpuClock) report(b *testing.B, units int, name string) {
	b.ReportMetric(float64(c.total.Nanoseconds())/float64(b.N)/float64(units), name)
}
