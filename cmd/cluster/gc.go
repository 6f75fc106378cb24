package cluster

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target a node runs with when
// GOGC is not set. A node's live heap is small (tens of MB: pebble's
// memtables and block cache live outside it) while it allocates for every
// request, so at Go's default of 100 the collector ran every second or two
// under load and took about a fifth of the CPU of the payments benchmark;
// at 400 it runs about a quarter as often, for a heap goal of a few hundred
// MB. GOGC and GOMEMLIMIT in the environment still decide when set.
const DefaultGCPercent = 400

// TuneGC sets the GC percent to DefaultGCPercent unless the GOGC
// environment variable is set; it reports whether it did.
func TuneGC() bool {
	if _, set := os.LookupEnv("GOGC"); set {
		return false
	}
	debug.SetGCPercent(DefaultGCPercent)
	return true
}
