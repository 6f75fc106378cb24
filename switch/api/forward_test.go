package api

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	txswitch "github.com/txswitch/txswitch/switch"
)

// tcpLeader serves a leader node on a loopback port, recording the headers
// of every request it receives.
type tcpLeader struct {
	*testNode
	addr string

	mu      sync.Mutex
	headers []map[string]string
}

func newTCPLeader(t *testing.T) *tcpLeader {
	t.Helper()
	l := &tcpLeader{testNode: newTestNode(t, func(o *Options) {
		o.Cluster = &fakeCluster{leader: true}
		o.NodeID = "leader"
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	l.addr = ln.Addr().String()
	h := l.srv.Handler()
	srv := &fasthttp.Server{Handler: func(fc *fasthttp.RequestCtx) {
		m := map[string]string{}
		for k, v := range fc.Request.Header.All() {
			m[string(k)] = string(v)
		}
		l.mu.Lock()
		l.headers = append(l.headers, m)
		l.mu.Unlock()
		h(fc)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return l
}

func (l *tcpLeader) seen() []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]string(nil), l.headers...)
}

func newFollower(t *testing.T, leaderAddr string, mod func(*Options)) *testNode {
	return newTestNode(t, func(o *Options) {
		o.Cluster = &fakeCluster{leader: false, addr: leaderAddr}
		o.NodeID = "follower-2"
		if mod != nil {
			mod(o)
		}
	})
}

func TestForwardWritesToLeader(t *testing.T) {
	leader := newTCPLeader(t)
	follower := newFollower(t, leader.addr, nil)
	notif := `{"notification_id":"n1","idempotency_key":"k","result":{"outcome":"approved"}}`
	tests := []struct {
		name       string
		req        request
		wantMethod string
		wantHeader map[string]string // headers the leader must see
	}{
		{"create order", request{"POST", "/v1/orders", mh("Idempotency-Key", "idem-1", "X-Request-Id", "rid-1"), orderBody}, "CreateOrder",
			map[string]string{"Idempotency-Key": "idem-1", "Authorization": "Bearer key-m1", "Content-Type": "application/json", "X-Request-Id": "rid-1"}},
		// RFC 9112 lets a client send the target in absolute form; the
		// follower forwards the path (it had forwarded the https:// URL,
		// which its plain-HTTP client refused before sending: an
		// outcome_unknown for ever, for a request the leader never saw).
		{"absolute-form target", request{"POST", "https://node.example/v1/orders", mh("Idempotency-Key", "idem-abs"), orderBody}, "CreateOrder",
			map[string]string{"Idempotency-Key": "idem-abs"}},
		{"cancel", request{"POST", "/v1/payments/pay_1/cancel", [][2]string{{"Authorization", "Bearer key-m1"}}, ""}, "Cancel",
			map[string]string{"Authorization": "Bearer key-m1"}},
		{"notification", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", sign("psp-secret", notif)}}, notif}, "Notify",
			map[string]string{"X-Provider-Signature": sign("psp-secret", notif)}},
		{"put config", request{"PUT", "/v1/admin/config", adminHeaders(), `{"version":1,"merchants":[],"methods":[],"providers":[]}`}, "PutConfig",
			map[string]string{"Authorization": "Bearer " + testAdminToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			beforeLeader := len(leader.svc.businessCalls())
			beforeHeaders := len(leader.seen())
			direct := func() response { // what the leader answers directly, for comparison
				return leader.do(t, tt.req)
			}
			resp := follower.do(t, tt.req)
			if len(follower.svc.businessCalls()) != 0 {
				t.Fatalf("the follower's service was called: %+v", follower.svc.businessCalls())
			}
			calls := leader.svc.businessCalls()[beforeLeader:]
			if len(calls) != 1 || calls[0].Method != tt.wantMethod {
				t.Fatalf("leader calls %+v, want one %s", calls, tt.wantMethod)
			}
			seen := leader.seen()[beforeHeaders:]
			if len(seen) != 1 {
				t.Fatalf("leader received %d requests", len(seen))
			}
			if seen[0]["X-Txswitch-Forwarded"] != "follower-2" {
				t.Errorf("X-Txswitch-Forwarded = %q", seen[0]["X-Txswitch-Forwarded"])
			}
			for k, v := range tt.wantHeader {
				if seen[0][k] != v {
					t.Errorf("leader saw %s = %q, want %q", k, seen[0][k], v)
				}
			}
			if tt.wantMethod == "CreateOrder" {
				// The order ids differ between two creations; compare the
				// reply with what the leader stored instead.
				var created struct{ ID string }
				_ = json.Unmarshal(resp.body, &created)
				get := leader.do(t, request{"GET", "/v1/orders/" + created.ID, mh(), ""})
				if resp.status != 201 || string(resp.body) != string(get.body) {
					t.Fatalf("follower answered %d %s; leader has %s", resp.status, resp.body, get.body)
				}
				return
			}
			want := direct()
			if resp.status != want.status || string(resp.body) != string(want.body) || resp.headers["Content-Type"] != want.headers["Content-Type"] {
				t.Fatalf("forwarded reply %d %q %s, direct %d %q %s", resp.status, resp.headers["Content-Type"], resp.body,
					want.status, want.headers["Content-Type"], want.body)
			}
		})
	}
	t.Run("reads stay local", func(t *testing.T) {
		before := len(leader.seen())
		resp := follower.do(t, request{"GET", "/v1/payments/pay_1", mh(), ""})
		if resp.status != 200 || len(leader.seen()) != before {
			t.Fatalf("GET on follower: %d, leader saw %d new requests", resp.status, len(leader.seen())-before)
		}
	})
	t.Run("leader errors relayed", func(t *testing.T) {
		resp := follower.do(t, request{"POST", "/v1/orders", [][2]string{{"Authorization", "Bearer key-m1"}, {"Content-Type", "application/json"}}, `{"reference":"x"}`})
		if resp.status != 201 {
			t.Fatalf("got %d", resp.status)
		}
		leader.svc.mu.Lock()
		leader.svc.err = errString("boom")
		leader.svc.mu.Unlock()
		defer func() { leader.svc.mu.Lock(); leader.svc.err = nil; leader.svc.mu.Unlock() }()
		resp = follower.do(t, request{"POST", "/v1/payments/pay_1/cancel", [][2]string{{"Authorization", "Bearer key-m1"}}, ""})
		if code, _ := resp.errCode(); resp.status != 500 || code != "internal" {
			t.Fatalf("got %d %s", resp.status, resp.body)
		}
	})
	if !strings.Contains(scrape(t, follower), `txswitch_http_forwarded_total{result="ok"}`) {
		t.Error("forwarded counter missing")
	}
}

func TestForwardRefusals(t *testing.T) {
	deadAddr := func() string { // a loopback port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}()
	tests := []struct {
		name       string
		leaderAddr string
		headers    [][2]string
		wantCode   string
		wantLeader string
	}{
		{"loop prevented", "10.9.9.9:8080", mh("X-Txswitch-Forwarded", "node-1"), "not_leader", "10.9.9.9:8080"},
		{"no leader", "", mh(), "no_leader", ""},
		{"leader unreachable", deadAddr, mh(), "leader_unreachable", deadAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFollower(t, tt.leaderAddr, nil)
			resp := f.do(t, request{"POST", "/v1/orders", tt.headers, orderBody})
			code, _ := resp.errCode()
			if resp.status != 503 || code != tt.wantCode || resp.headers["Retry-After"] != "1" || resp.headers["X-Txswitch-Leader"] != tt.wantLeader {
				t.Fatalf("got %d %s %v, want 503 %s leader %q", resp.status, resp.body, resp.headers, tt.wantCode, tt.wantLeader)
			}
			if calls := f.svc.businessCalls(); len(calls) != 0 {
				t.Fatalf("follower service called: %+v", calls)
			}
		})
	}
}

// TestForwardOutcomeUnknown: the leader received the request but did not
// answer before the follower gave up, so the follower cannot say whether
// the write happened.
func TestForwardOutcomeUnknown(t *testing.T) {
	leader := newTCPLeader(t)
	release := make(chan struct{})
	leader.svc.mu.Lock()
	leader.svc.block = release
	leader.svc.mu.Unlock()
	defer close(release)
	// The forward deadline also covers the dial, which must succeed (a
	// failed dial is leader_unreachable) on a loaded machine; the leader
	// blocks until the test ends, so any deadline expires.
	f := newFollower(t, leader.addr, func(o *Options) {
		o.RequestTimeout = time.Second
		o.ForwardGrace = time.Millisecond
	})
	resp := f.do(t, request{"POST", "/v1/orders", mh("Idempotency-Key", "k1"), orderBody})
	if code, _ := resp.errCode(); resp.status != 503 || code != "outcome_unknown" || resp.headers["Retry-After"] == "" {
		t.Fatalf("got %d %s %v", resp.status, resp.body, resp.headers)
	}
	if !strings.Contains(string(resp.body), "Idempotency-Key") {
		t.Errorf("message does not tell the caller to retry with the same key: %s", resp.body)
	}
}

func TestLeaderServesForwardedRequest(t *testing.T) {
	n := newTestNode(t, func(o *Options) { o.Cluster = &fakeCluster{leader: true} })
	resp := n.do(t, request{"POST", "/v1/orders", mh("X-Txswitch-Forwarded", "node-3"), orderBody})
	if resp.status != 201 || len(n.svc.businessCalls()) != 1 {
		t.Fatalf("got %d %s", resp.status, resp.body)
	}
}

func TestForwarderClientCacheBounded(t *testing.T) {
	f := newForwarder(4, time.Second)
	for i := range 3 * maxLeaderClients {
		f.client("10.0.0." + strings.Repeat("1", 1+i%3) + ":" + string(rune('0'+i%10)))
		f.mu.Lock()
		size := len(f.clients)
		f.mu.Unlock()
		if size > maxLeaderClients {
			t.Fatalf("cache holds %d clients", size)
		}
	}
	a, b := f.client("http://h:1"), f.client("http://h:1")
	if a != b || a.Addr != "h:1" {
		t.Fatalf("client not reused or address %q", a.Addr)
	}
	f.close()
}

// forwardHeld sends req through a follower to a leader that holds it,
// and returns once the leader's service has it.
func forwardHeld(t *testing.T, leader *tcpLeader, f *testNode, req request) (<-chan response, func()) {
	t.Helper()
	hold := make(chan struct{})
	leader.svc.mu.Lock()
	leader.svc.block = hold
	leader.svc.mu.Unlock()
	before := len(leader.svc.businessCalls())
	out := make(chan response, 1)
	go func() { out <- f.do(t, req) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(leader.svc.businessCalls()) == before {
		if time.Now().After(deadline) {
			t.Fatal("the forwarded request never reached the leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var once sync.Once
	return out, func() { once.Do(func() { close(hold) }) }
}

// TestForwardStopsWaitingForReplacedLeader: a follower holding a request
// for a leader that has been replaced (frozen, say, while the others
// elected a new one) answers at once with the new leader's address, not
// when its forward timeout ends: a write's outcome is unknown (the old
// leader may have logged it); a read changed nothing and is asked again,
// with no talk of an outcome or an Idempotency-Key.
func TestForwardStopsWaitingForReplacedLeader(t *testing.T) {
	tests := []struct {
		name     string
		req      request
		wantCode string
	}{
		{"write", request{"POST", "/v1/orders", mh("Idempotency-Key", "k-held"), orderBody}, "outcome_unknown"},
		{"read", request{"GET", "/v1/orders/ord_1/methods", mh(), ""}, "leader_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader := newTCPLeader(t)
			cl := &fakeCluster{addr: leader.addr}
			f := newTestNode(t, func(o *Options) {
				o.Cluster = cl
				o.RequestTimeout = time.Hour // only the new leader can end the wait
			})
			out, release := forwardHeld(t, leader, f, tt.req)
			defer release()
			cl.setLeader(3, 2, "10.0.0.3:8080")
			select {
			case resp := <-out:
				if code, _ := resp.errCode(); resp.status != 503 || code != tt.wantCode {
					t.Fatalf("got %d %s, want 503 %s", resp.status, resp.body, tt.wantCode)
				}
				if got := resp.headers["X-Txswitch-Leader"]; got != "10.0.0.3:8080" {
					t.Errorf("leader hint %q, want the new leader's address", got)
				}
				if resp.headers["Retry-After"] == "" {
					t.Errorf("no Retry-After: %v", resp.headers)
				}
			case <-time.After(5 * time.Second): // before the leader's own 10 s timeout answers
				t.Fatal("the follower still waits for the replaced leader")
			}
			// The abandoned call ends when the old leader answers; its
			// request and response go back to their pools only then (the
			// race detector watches).
			release()
		})
	}
}

// TestForwardedLeaderTransfer: a leader transfer sent to a follower moves
// the leadership itself. Once the follower sees the member it names lead,
// it answers what the leader answers for that (200), not outcome_unknown
// as for a leader replaced while it held the request; another member
// elected instead is still such a replacement.
func TestForwardedLeaderTransfer(t *testing.T) {
	tests := []struct {
		name       string
		newLeader  uint64
		wantStatus int
		wantBody   string // or the error code
	}{
		{"the target leads", 3, 200, `{"to":3}`},
		{"another member leads", 2, 503, "outcome_unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader := newTCPLeader(t)
			hold := make(chan struct{})
			defer close(hold)
			leader.admin.mu.Lock()
			leader.admin.block = hold
			leader.admin.mu.Unlock()
			cl := &fakeCluster{addr: leader.addr}
			f := newTestNode(t, func(o *Options) {
				o.Cluster = cl
				o.RequestTimeout = time.Hour // only the follower's own view can end the wait
			})
			out := make(chan response, 1)
			go func() { out <- f.do(t, request{"POST", "/v1/admin/leader", adminHeaders(), `{"to":3}`}) }()
			deadline := time.Now().Add(10 * time.Second)
			for !slices.Contains(leader.admin.Calls(), "TransferLeader 3") {
				if time.Now().After(deadline) {
					t.Fatal("the forwarded transfer never reached the leader")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cl.setLeader(tt.newLeader, 2, "10.0.0.9:8080")
			select {
			case resp := <-out:
				got := string(resp.body)
				if resp.status != 200 {
					got, _ = resp.errCode()
				}
				if resp.status != tt.wantStatus || got != tt.wantBody {
					t.Fatalf("got %d %s, want %d %s", resp.status, resp.body, tt.wantStatus, tt.wantBody)
				}
			case <-time.After(5 * time.Second): // before the leader's own 10 s timeout answers
				t.Fatal("the follower still waits for the leader it forwarded the transfer to")
			}
		})
	}
}

// TestForwardWaitsThroughElection: an election without a leader yet, or
// one the same leader wins again, does not end the wait: that leader may
// still answer, and its answer is relayed.
func TestForwardWaitsThroughElection(t *testing.T) {
	leader := newTCPLeader(t)
	cl := &fakeCluster{addr: leader.addr}
	f := newTestNode(t, func(o *Options) {
		o.Cluster = cl
		o.RequestTimeout = time.Hour
	})
	out, release := forwardHeld(t, leader, f, request{"POST", "/v1/orders", mh("Idempotency-Key", "k-held"), orderBody})
	defer release()
	cl.setLeader(0, 2, "")          // an election: no leader known
	cl.setLeader(1, 3, leader.addr) // the same node leads again
	select {
	case resp := <-out:
		t.Fatalf("answered %d %s before the leader did", resp.status, resp.body)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case resp := <-out:
		if resp.status != 201 {
			t.Fatalf("got %d %s, want the leader's 201", resp.status, resp.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the leader's answer was not relayed")
	}
}

func TestReplaced(t *testing.T) {
	at := func(id, term uint64) txswitch.Leadership { return txswitch.Leadership{LeaderID: id, Term: term} }
	tests := []struct {
		name string
		now  txswitch.Leadership
		want bool
	}{
		{"unchanged", at(1, 4), false},
		{"election, no leader known", at(0, 5), false},
		{"the same leader at a later term", at(1, 5), false},
		{"another leader at a later term", at(2, 5), true},
		{"this node leads now", txswitch.Leadership{IsLeader: true, LeaderID: 3, Term: 5}, true},
		{"another leader, same term (not raft; wait)", at(2, 4), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replaced(at(1, 4), tt.now); got != tt.want {
				t.Errorf("replaced = %v, want %v", got, tt.want)
			}
		})
	}
}
