package cluster

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/txswitch/txswitch/consensus"
	txswitch "github.com/txswitch/txswitch/switch"
)

// refuseIfRanBefore decides from what the other bootstrap members say;
// each case is one member's answer to node 3's question.
func TestRefuseIfRanBefore(t *testing.T) {
	const self = 3
	answer := func(st Status) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer admin" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			_ = json.NewEncoder(w).Encode(st)
		}
	}
	hang := make(chan struct{})
	defer close(hang)
	cases := []struct {
		name    string
		handler http.HandlerFunc // nil: nothing listens
		token   string
		refuse  string // substring of the error; "" allows the bootstrap
	}{
		{"version reported", answer(Status{Versions: txswitch.VersionStatus{Members: map[uint64]txswitch.VersionRange{self: {Min: 1, Max: 5}}}}), "admin", "ran in this cluster before"},
		{"leader saw it acknowledge entries", answer(Status{Raft: consensus.Status{Progress: map[uint64]consensus.PeerProgress{self: {Match: 7}}}}), "admin", "ran in this cluster before"},
		{"never seen", answer(Status{Raft: consensus.Status{Progress: map[uint64]consensus.PeerProgress{self: {Match: 0, Next: 4}}}}), "admin", ""},
		{"member will not say", answer(Status{}), "other", ""},
		{"member overloaded", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":{"code":"overloaded"}}`, http.StatusServiceUnavailable)
		}, "admin", "start again once it answers"},
		{"member not running", nil, "admin", ""},
		{"member there but silent", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}, "admin", "start again once it answers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := ""
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				defer srv.Close()
				addr = strings.TrimPrefix(srv.URL, "http://")
			} else {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr = l.Addr().String()
				l.Close()
			}
			n := &Node{log: zap.NewNop(), cfg: Config{ID: self, AdminToken: tc.token, DataDir: t.TempDir(),
				Bootstrap: []consensus.Peer{{ID: 1, APIAddr: addr}, {ID: self, APIAddr: "127.0.0.1:1"}}}}
			err := n.refuseIfRanBefore()
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("bootstrap refused: %v", err)
			case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse)):
				t.Fatalf("got %v, want an error saying %q", err, tc.refuse)
			}
		})
	}
}
