package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The configuration file fills what no flag set; a flag wins over it.
func TestNodeConfigFileAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.yaml")
	file := "data_dir: /file/data\napi_listen: 127.0.0.1:9100\ntick_interval: 50ms\napi_max_conns: 500\n" +
		"peers:\n  - {id: 1, raft_addr: 'a:1', api_addr: 'a:2'}\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		dataDir  string
		apiConns int
		tick     time.Duration
	}{
		{"file alone", nil, "/file/data", 500, 50 * time.Millisecond},
		{"flags win", []string{"--data-dir", "/flag/data", "--api-max-conns", "7", "--tick", "20ms"}, "/flag/data", 7, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlags("node", "")
			var f nodeFile
			var peers peerList
			nodeFlags(fs, &f, &peers, secretList{})
			if err := parse(fs, tc.args); err != nil {
				t.Fatal(err)
			}
			if err := mergeNodeFile(path, fs, &f); err != nil {
				t.Fatal(err)
			}
			if f.DataDir != tc.dataDir || f.APIMaxConns != tc.apiConns || f.TickInterval != tc.tick ||
				f.APIListen != "127.0.0.1:9100" || len(f.Peers) != 1 {
				t.Fatalf("merged config %+v", f)
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("api_max_connections: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var f nodeFile
	fs := newFlags("node", "")
	nodeFlags(fs, &f, new(peerList), secretList{})
	if err := mergeNodeFile(bad, fs, &f); err == nil {
		t.Fatal("an unknown key in the configuration file was accepted")
	}
}
