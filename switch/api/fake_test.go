package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

// call is one Service call the fake saw.
type call struct {
	Method   string
	Caller   txswitch.Caller
	ID       string // order, payment or provider
	Req      any
	Deadline bool // the context carried a deadline
}

// fakeService is an in-memory txswitch.Service: orders live in a map, other
// resources are echoed. It records every call. Idempotency is the real
// Service's job, not the HTTP layer's, so the fake does not implement it.
type fakeService struct {
	mu     sync.Mutex
	calls  []call
	orders map[string]txswitch.Order
	seq    int
	// err, when set, is returned by every method but Authenticate.
	err error
	// block, when set, makes every business call wait for it or ctx.
	block chan struct{}
}

var _ txswitch.Service = (*fakeService)(nil)

func newFakeService() *fakeService {
	return &fakeService{orders: map[string]txswitch.Order{}}
}

// keys maps API keys to merchants.
var testKeys = map[string]string{"key-m1": "m1", "key-m2": "m2"}

func (f *fakeService) record(ctx context.Context, method string, c txswitch.Caller, id string, req any) error {
	_, hasDeadline := ctx.Deadline()
	f.mu.Lock()
	f.calls = append(f.calls, call{Method: method, Caller: c, ID: id, Req: req, Deadline: hasDeadline})
	err, block := f.err, f.block
	f.mu.Unlock()
	if err := waitUnblocked(ctx, block); err != nil {
		return err
	}
	return err
}

// waitUnblocked holds a fake's call until block is closed (a nil block
// holds nothing) or ctx ends.
func waitUnblocked(ctx context.Context, block chan struct{}) error {
	if block == nil {
		return nil
	}
	select {
	case <-block:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeService) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// businessCalls are the calls other than Authenticate.
func (f *fakeService) businessCalls() []call {
	var out []call
	for _, c := range f.Calls() {
		if c.Method != "Authenticate" {
			out = append(out, c)
		}
	}
	return out
}

func echo(status int, method string, c txswitch.Caller, id string, req any) (txswitch.Reply, error) {
	b, err := json.Marshal(map[string]any{"method": method, "merchant": c.MerchantID, "key": c.IdempotencyKey, "id": id, "req": req})
	return txswitch.Reply{Status: status, Body: b}, err
}

func (f *fakeService) Authenticate(ctx context.Context, apiKey string) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{Method: "Authenticate", Req: apiKey})
	f.mu.Unlock()
	if m, ok := testKeys[apiKey]; ok {
		return m, nil
	}
	return "", txswitch.NewError(401, "unauthorized", "", "unknown API key")
}

func (f *fakeService) CreateOrder(ctx context.Context, c txswitch.Caller, req txswitch.CreateOrderRequest) (txswitch.Reply, error) {
	if err := f.record(ctx, "CreateOrder", c, "", req); err != nil {
		return txswitch.Reply{}, err
	}
	f.mu.Lock()
	f.seq++
	o := txswitch.Order{ID: fmt.Sprintf("ord_%d", f.seq), MerchantID: c.MerchantID, Reference: req.Reference,
		Status: txswitch.OrderCreated, Amount: req.Amount, Customer: req.Customer, Channel: req.Channel, Lines: req.Lines,
		CreatedAt: time.Unix(1700000000, 0).UTC()}
	f.orders[o.ID] = o
	f.mu.Unlock()
	b, err := json.Marshal(o)
	return txswitch.Reply{Status: 201, Body: b}, err
}

func (f *fakeService) GetOrder(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	if err := f.record(ctx, "GetOrder", c, id, nil); err != nil {
		return txswitch.Reply{}, err
	}
	f.mu.Lock()
	o, ok := f.orders[id]
	f.mu.Unlock()
	if !ok || o.MerchantID != c.MerchantID {
		return txswitch.Reply{}, txswitch.NewError(404, "not_found", "", "no such order")
	}
	b, err := json.Marshal(o)
	return txswitch.Reply{Status: 200, Body: b}, err
}

func (f *fakeService) simple(ctx context.Context, method string, status int, c txswitch.Caller, id string, req any) (txswitch.Reply, error) {
	if err := f.record(ctx, method, c, id, req); err != nil {
		return txswitch.Reply{}, err
	}
	return echo(status, method, c, id, req)
}

func (f *fakeService) Methods(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	return f.simple(ctx, "Methods", 200, c, id, nil)
}
func (f *fakeService) Timeline(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	return f.simple(ctx, "Timeline", 200, c, id, nil)
}
func (f *fakeService) Explain(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	return f.simple(ctx, "Explain", 200, c, id, nil)
}
func (f *fakeService) CreatePayment(ctx context.Context, c txswitch.Caller, id string, req txswitch.CreatePaymentRequest) (txswitch.Reply, error) {
	return f.simple(ctx, "CreatePayment", 201, c, id, req)
}
func (f *fakeService) GetPayment(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	return f.simple(ctx, "GetPayment", 200, c, id, nil)
}
func (f *fakeService) Capture(ctx context.Context, c txswitch.Caller, id string, req txswitch.CaptureRequest) (txswitch.Reply, error) {
	return f.simple(ctx, "Capture", 201, c, id, req)
}
func (f *fakeService) Refund(ctx context.Context, c txswitch.Caller, id string, req txswitch.RefundRequest) (txswitch.Reply, error) {
	return f.simple(ctx, "Refund", 201, c, id, req)
}
func (f *fakeService) Cancel(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	return f.simple(ctx, "Cancel", 200, c, id, nil)
}
func (f *fakeService) Notify(ctx context.Context, provider string, n txswitch.ProviderNotification) (txswitch.Reply, error) {
	return f.simple(ctx, "Notify", 200, txswitch.Caller{}, provider, n)
}
func (f *fakeService) ReviewPayment(ctx context.Context, id string, req txswitch.ReviewRequest) (txswitch.Reply, error) {
	return f.simple(ctx, "ReviewPayment", 200, txswitch.Caller{}, id, req)
}
func (f *fakeService) ResolvePayment(ctx context.Context, id string, req txswitch.ResolveRequest) (txswitch.Reply, error) {
	return f.simple(ctx, "ResolvePayment", 200, txswitch.Caller{}, id, req)
}

// intentsQuery is what ListIntents (or ListReviews) was asked, as the
// fake records it.
type intentsQuery struct {
	State, After string
	Limit        int
}

func (f *fakeService) ListIntents(ctx context.Context, state, after string, limit int) (txswitch.Reply, error) {
	return f.simple(ctx, "ListIntents", 200, txswitch.Caller{}, "", intentsQuery{state, after, limit})
}
func (f *fakeService) ListReviews(ctx context.Context, after string, limit int) (txswitch.Reply, error) {
	return f.simple(ctx, "ListReviews", 200, txswitch.Caller{}, "", intentsQuery{After: after, Limit: limit})
}
func (f *fakeService) GetConfig(ctx context.Context) (txswitch.Reply, error) {
	return f.simple(ctx, "GetConfig", 200, txswitch.Caller{}, "", nil)
}
func (f *fakeService) PutConfig(ctx context.Context, cfg txswitch.RoutingConfig) (txswitch.Reply, error) {
	return f.simple(ctx, "PutConfig", 200, txswitch.Caller{}, "", cfg)
}

// fakeCluster is a settable ClusterInfo.
type fakeCluster struct {
	mu       sync.Mutex
	leader   bool
	addr     string
	notReady error
	removed  bool
	// leaderID and term, until setLeader, are 1 and 1.
	leaderID, term uint64
	changed        chan struct{}
}

func (c *fakeCluster) Leadership() txswitch.Leadership {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leadershipLocked()
}

func (c *fakeCluster) leadershipLocked() txswitch.Leadership {
	if c.term == 0 { // never set: leader 1 at term 1
		return txswitch.Leadership{IsLeader: c.leader, LeaderID: 1, Term: 1}
	}
	return txswitch.Leadership{IsLeader: c.leader, LeaderID: c.leaderID, Term: c.term}
}

func (c *fakeCluster) LeadershipWatch() (txswitch.Leadership, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.leadershipLocked(), c.changed
}

// setLeader changes the leader another node is known as (this node stays a
// follower), as an election this node learns of does.
func (c *fakeCluster) setLeader(id, term uint64, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaderID, c.term, c.addr = id, term, addr
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

func (c *fakeCluster) LeaderAPIAddr() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr, c.addr != ""
}

func (c *fakeCluster) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notReady
}

func (c *fakeCluster) Removed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

// fakeAdmin records admin operations.
type fakeAdmin struct {
	mu    sync.Mutex
	calls []string
	err   error
	// block, when set, makes a leader transfer wait for it or ctx.
	block chan struct{}
}

func (a *fakeAdmin) rec(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, s)
	return a.err
}

func (a *fakeAdmin) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

func (a *fakeAdmin) Status(ctx context.Context) (any, error) {
	return map[string]any{"leader": 1, "members": []int{1, 2, 3}}, a.rec("Status")
}
func (a *fakeAdmin) AddMember(ctx context.Context, raftAddr, apiAddr string, _ *txswitch.VersionRange) (uint64, error) {
	return 4, a.rec("AddMember " + raftAddr + " " + apiAddr)
}
func (a *fakeAdmin) RemoveMember(ctx context.Context, id uint64) error {
	return a.rec(fmt.Sprintf("RemoveMember %d", id))
}
func (a *fakeAdmin) TransferLeader(ctx context.Context, to uint64) error {
	err := a.rec(fmt.Sprintf("TransferLeader %d", to))
	a.mu.Lock()
	block := a.block
	a.mu.Unlock()
	if err := waitUnblocked(ctx, block); err != nil {
		return err
	}
	return err
}

// testNode is a Server serving on an in-memory listener.
type testNode struct {
	srv   *Server
	svc   *fakeService
	admin *fakeAdmin
	ln    *fasthttputil.InmemoryListener
	reg   *prometheus.Registry
}

const testAdminToken = "admin-secret"

func newTestNode(t testing.TB, mod func(*Options)) *testNode {
	t.Helper()
	n := &testNode{svc: newFakeService(), admin: &fakeAdmin{}, reg: prometheus.NewRegistry()}
	opts := Options{
		Service:         n.svc,
		Admin:           n.admin,
		AdminToken:      testAdminToken,
		ProviderSecrets: map[string]string{"simpsp": "psp-secret"},
		NodeID:          "test-node",
		Registry:        n.reg,
		Logger:          zap.NewNop(),
	}
	if mod != nil {
		mod(&opts)
	}
	n.srv = New(opts)
	n.ln = fasthttputil.NewInmemoryListener()
	go func() { _ = n.srv.Serve(n.ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.srv.Shutdown(ctx)
	})
	return n
}

// request is a raw HTTP request, written byte for byte so that tests can
// send what a normal client would refuse to.
type request struct {
	method  string
	path    string
	headers [][2]string
	body    string
}

func (r request) bytes() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: test\r\n", r.method, r.path)
	for _, h := range r.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(r.body), r.body)
	return []byte(b.String())
}

// response is what the server answered.
type response struct {
	status  int
	headers map[string]string
	body    []byte
}

// errCode is the "error.code" of an error body ("" when none).
func (r response) errCode() (code, field string) {
	var e errorBody
	if json.Unmarshal(r.body, &e) != nil || e.Error == nil {
		return "", ""
	}
	return e.Error.Code, e.Error.Field
}

func (n *testNode) do(t testing.TB, r request) response {
	t.Helper()
	conn, err := n.ln.Dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return roundTrip(t, conn, r)
}

func roundTrip(t testing.TB, conn net.Conn, r request) response {
	t.Helper()
	defer conn.Close()
	if _, err := conn.Write(r.bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatalf("read response to %s %s: %v", r.method, r.path, err)
	}
	out := response{status: resp.StatusCode(), headers: map[string]string{}, body: append([]byte(nil), resp.Body()...)}
	for k, v := range resp.Header.All() {
		out.headers[string(k)] = string(v)
	}
	return out
}

// merchant headers.
func mh(extra ...string) [][2]string {
	h := [][2]string{{"Authorization", "Bearer key-m1"}, {"Content-Type", "application/json"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h = append(h, [2]string{extra[i], extra[i+1]})
	}
	return h
}

func adminHeaders() [][2]string {
	return [][2]string{{"Authorization", "Bearer " + testAdminToken}, {"Content-Type", "application/json"}}
}
