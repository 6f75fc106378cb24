package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A demo restarted on the same data dir uses the key its cluster already
// stored (only the first run seeds the routing configuration).
func TestDemoAPIKeySurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	first, err := demoAPIKey(dir)
	if err != nil || !strings.HasPrefix(first, "sk_demo_") {
		t.Fatalf("first key %q %v", first, err)
	}
	again, err := demoAPIKey(dir)
	if err != nil || again != first {
		t.Fatalf("after a restart the key is %q (%v), want %q", again, err, first)
	}
	if st, err := os.Stat(filepath.Join(dir, demoAPIKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if other, _ := demoAPIKey(t.TempDir()); other == first {
		t.Fatal("two data dirs share a key")
	}
}
