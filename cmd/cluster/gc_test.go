package cluster

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	tests := []struct {
		name    string
		gogc    string // "" : unset
		applied bool
		want    int
	}{
		{"GOGC unset", "", true, DefaultGCPercent},
		{"GOGC set", "150", false, 150},
		{"GOGC off", "off", false, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := debug.SetGCPercent(100)
			t.Cleanup(func() { debug.SetGCPercent(before) })
			if tc.gogc != "" {
				t.Setenv("GOGC", tc.gogc)
				// The runtime read GOGC at start; model a process started with it.
				if tc.gogc == "off" {
					debug.SetGCPercent(-1)
				} else {
					debug.SetGCPercent(150)
				}
			} else {
				t.Setenv("GOGC", "") // restores GOGC after the test
				if err := os.Unsetenv("GOGC"); err != nil {
					t.Fatal(err)
				}
			}
			if got := TuneGC(); got != tc.applied {
				t.Fatalf("TuneGC() = %v; want %v", got, tc.applied)
			}
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Fatalf("GC percent = %d; want %d", got, tc.want)
			}
		})
	}
}
