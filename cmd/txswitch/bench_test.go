package main

import (
	"bytes"
	"compress/gzip"
	"io"
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

// --memprofile writes one heap profile per benchmark, in pprof's format
// (gzipped protobuf), taken while the benchmark ran.
func TestBenchMemProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster on disk")
	}
	dir := t.TempDir()
	prof := filepath.Join(dir, "heap")
	// --gomaxprocs -1: the bench would otherwise raise this test
	// process's GOMAXPROCS for every test after it.
	err := runBench([]string{"--what", "raft", "--duration", "300ms", "--proposers", "8", "--payload", "64",
		"--dir", filepath.Join(dir, "data"), "--gomaxprocs", "-1", "--memprofile", prof})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(prof + ".raft")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not a gzipped pprof profile: %v", prof+".raft", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("inuse_space")) {
		t.Fatalf("%s has no inuse_space sample type: not a heap profile", prof+".raft")
	}
}
