package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchDir: each benchmark gets a directory of its own under --dir,
// and one that already holds data is refused (a second cluster started on
// the first one's raft state never elects a leader).
func TestBenchDir(t *testing.T) {
	base := t.TempDir()
	if d, err := benchDir("", "raft"); d != "" || err != nil {
		t.Fatalf(`benchDir("") = %q, %v; want "" (a temp dir per benchmark)`, d, err)
	}
	a, err := benchDir(base, "payments")
	if err != nil || a != filepath.Join(base, "payments") {
		t.Fatalf("payments: %q, %v", a, err)
	}
	b, err := benchDir(base, "payments-slow")
	if err != nil || b == a {
		t.Fatalf("payments-slow: %q, %v (payments has %q)", b, err, a)
	}
	if err := os.MkdirAll(filepath.Join(a, "node1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := benchDir(base, "payments"); err == nil || !strings.Contains(err.Error(), "give an empty --dir") {
		t.Fatalf("a used dir was accepted: %v", err)
	}
}
