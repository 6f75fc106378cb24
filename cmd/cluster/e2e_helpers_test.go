package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// The end-to-end tests drive a real in-process cluster over HTTP only, and
// take their evidence from outside the switch where they can: the
// answers the client was given and the simulated PSPs' ledgers.

// e2eClient is a merchant (or admin) talking HTTP to the cluster. It never
// fails the test on transport errors itself: chaos tests expect some.
var e2eClient = &http.Client{Timeout: 20 * time.Second}

// e2eResp is one HTTP answer.
type e2eResp struct {
	Status int
	Body   []byte
	Header http.Header
}

// e2eAPIError is the API's error body.
type e2eAPIError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func (r e2eResp) errCode() string {
	var e e2eAPIError
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

func (r e2eResp) decode(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, out); err != nil {
		t.Fatalf("decode %d %s: %v", r.Status, r.Body, err)
	}
}

// e2eRawReq describes one request byte for byte.
type e2eRawReq struct {
	Method, Path string
	Headers      [][2]string
	Body         []byte
}

// e2eSend performs req against addr; err is a transport error.
func e2eSend(addr string, r e2eRawReq) (e2eResp, error) {
	var rd io.Reader
	if r.Body != nil {
		rd = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, "http://"+addr+r.Path, rd)
	if err != nil {
		return e2eResp{}, err
	}
	for _, h := range r.Headers {
		req.Header.Add(h[0], h[1])
	}
	hr, err := e2eClient.Do(req)
	if err != nil {
		return e2eResp{}, err
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(hr.Body)
	if err != nil {
		return e2eResp{}, err
	}
	return e2eResp{Status: hr.StatusCode, Body: b, Header: hr.Header}, nil
}

// e2eMerchantHeaders are a JSON request's headers for api key key.
func e2eMerchantHeaders(key, idem string) [][2]string {
	h := [][2]string{{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}}
	if idem != "" {
		h = append(h, [2]string{"Idempotency-Key", idem})
	}
	return h
}

func e2eMustJSON(t *testing.T, v any) []byte {
	t.Helper()
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// e2eDo sends a merchant request with l's demo key and fails the test on a
// transport error.
func e2eDo(t *testing.T, l *Local, addr, method, path, idem string, body any) e2eResp {
	t.Helper()
	r := e2eRawReq{Method: method, Path: path, Headers: e2eMerchantHeaders(l.APIKey, idem)}
	if body != nil {
		r.Body = e2eMustJSON(t, body)
	}
	out, err := e2eSend(addr, r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return out
}

// e2eAdmin sends an admin request.
func e2eAdmin(t *testing.T, l *Local, addr, method, path string, body any) e2eResp {
	t.Helper()
	r := e2eRawReq{Method: method, Path: path, Headers: [][2]string{{"Authorization", "Bearer " + l.AdminToken}, {"Content-Type", "application/json"}}}
	if body != nil {
		r.Body = e2eMustJSON(t, body)
	}
	out, err := e2eSend(addr, r)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	return out
}

var e2eIdemSeq atomic.Uint64

// e2eNewKey is a unique idempotency key.
func e2eNewKey(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), e2eIdemSeq.Add(1))
}

// startE2E starts a 3-node cluster for one test, closed at its end. The
// resolver runs often so in-doubt tests do not wait a second per pass.
func startE2E(t *testing.T) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{Dir: t.TempDir(), ResolveEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// e2eAnyAddr is a running node's API address (the leader's when leader).
func e2eAnyAddr(t *testing.T, l *Local, leader bool) string {
	t.Helper()
	if leader {
		var addr string
		waitFor(t, 20*time.Second, "a leader", func() bool {
			if n := l.Leader(); n != nil {
				addr = n.APIAddr()
				return true
			}
			return false
		})
		return addr
	}
	ns := l.Nodes()
	if len(ns) == 0 {
		t.Fatal("no running node")
	}
	return ns[0].APIAddr()
}

// e2eLeaderIndex waits for a leader and returns its slot. LeaderIndex is
// -1 during an election (frequent on a loaded machine with 20 ms ticks),
// and StopNode(-1) or Node(-1) would panic and end the whole test binary.
func e2eLeaderIndex(t *testing.T, l *Local) int {
	t.Helper()
	li := -1
	waitFor(t, 30*time.Second, "a leader", func() bool { li = l.LeaderIndex(); return li >= 0 })
	return li
}

// startStreaming starts a 3-node cluster with the given snapshot settings,
// waits until it streams snapshot images (cluster version
// VersionStreamedImages), and returns it with the leader's API address
// and the slot of a follower.
func startStreaming(t *testing.T, cfg LocalConfig) (l *Local, leaderAddr string, follower int) {
	t.Helper()
	cfg.Dir = t.TempDir()
	l, err := StartLocal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	e2eWaitVersion(t, l, txswitch.VersionStreamedImages)
	leaderAddr = e2eAnyAddr(t, l, true)
	for i := range l.Size() {
		if n := l.Node(i); n != nil && n.APIAddr() != leaderAddr {
			return l, leaderAddr, i
		}
	}
	t.Fatal("no follower")
	return nil, "", 0
}

// e2eFollowerAddr is a running follower's API address.
func e2eFollowerAddr(t *testing.T, l *Local) string {
	t.Helper()
	li := e2eLeaderIndex(t, l)
	for i := 0; i < l.Size(); i++ {
		if n := l.Node(i); n != nil && i != li {
			return n.APIAddr()
		}
	}
	t.Fatal("no running follower")
	return ""
}

// waitFor polls cond every 25 ms up to limit. It asserts an outcome, not
// a speed: limits are generous.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// e2eOrderReq is a valid order request.
func e2eOrderReq(value int64, currency, country string) txswitch.CreateOrderRequest {
	return txswitch.CreateOrderRequest{
		Reference: "e2e-" + e2eNewKey("ref"), Amount: txswitch.Money{Value: value, Currency: currency},
		Customer: txswitch.Customer{Country: country, ID: "cust-1", Email: "shopper@example.com"}, Channel: "online",
	}
}

// e2eCreateOrder creates an order and returns it.
func e2eCreateOrder(t *testing.T, l *Local, addr string, req txswitch.CreateOrderRequest) txswitch.Order {
	t.Helper()
	r := e2eDo(t, l, addr, "POST", "/v1/orders", e2eNewKey("ord"), req)
	if r.Status != 201 {
		t.Fatalf("create order: %d %s", r.Status, r.Body)
	}
	var o txswitch.Order
	r.decode(t, &o)
	if !strings.HasPrefix(o.ID, "ord_") || o.Status != txswitch.OrderCreated || o.Amount != req.Amount {
		t.Fatalf("created order: %+v", o)
	}
	return o
}

// e2ePay creates a payment and returns the answer and the payment.
func e2ePay(t *testing.T, l *Local, addr, orderID string, req txswitch.CreatePaymentRequest) (e2eResp, txswitch.Payment) {
	t.Helper()
	r := e2eDo(t, l, addr, "POST", "/v1/orders/"+orderID+"/payments", e2eNewKey("pay"), req)
	var p txswitch.Payment
	if r.Status/100 == 2 {
		r.decode(t, &p)
	}
	return r, p
}

func e2eGetOrder(t *testing.T, l *Local, addr, id string) txswitch.Order {
	t.Helper()
	r := e2eDo(t, l, addr, "GET", "/v1/orders/"+id, "", nil)
	if r.Status != 200 {
		t.Fatalf("get order %s: %d %s", id, r.Status, r.Body)
	}
	var o txswitch.Order
	r.decode(t, &o)
	return o
}

func e2eGetPayment(t *testing.T, l *Local, addr, id string) txswitch.Payment {
	t.Helper()
	r := e2eDo(t, l, addr, "GET", "/v1/payments/"+id, "", nil)
	if r.Status != 200 {
		t.Fatalf("get payment %s: %d %s", id, r.Status, r.Body)
	}
	var p txswitch.Payment
	r.decode(t, &p)
	return p
}

// e2eWaitPayment polls the payment until want accepts it.
func e2eWaitPayment(t *testing.T, l *Local, id string, what string, want func(txswitch.Payment) bool) txswitch.Payment {
	t.Helper()
	var p txswitch.Payment
	waitFor(t, 20*time.Second, "payment "+id+" "+what, func() bool {
		n := l.Nodes()
		if len(n) == 0 {
			return false
		}
		r, err := e2eSend(n[0].APIAddr(), e2eRawReq{Method: "GET", Path: "/v1/payments/" + id, Headers: e2eMerchantHeaders(l.APIKey, "")})
		if err != nil || r.Status != 200 {
			return false
		}
		if json.Unmarshal(r.Body, &p) != nil {
			return false
		}
		return want(p)
	})
	return p
}

func e2eMethodNames(m txswitch.MethodsResponse) []string {
	var out []string
	for _, o := range m.Methods {
		out = append(out, o.Method)
	}
	return out
}

func e2eMethodsOf(t *testing.T, l *Local, addr, orderID string) txswitch.MethodsResponse {
	t.Helper()
	r := e2eDo(t, l, addr, "GET", "/v1/orders/"+orderID+"/methods", "", nil)
	if r.Status != 200 {
		t.Fatalf("methods: %d %s", r.Status, r.Body)
	}
	var m txswitch.MethodsResponse
	r.decode(t, &m)
	return m
}

func e2eHas(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// e2eLedgers snapshots every PSP's full ledger.
func e2eLedgers(l *Local) map[string][]sim.LedgerEntry {
	out := map[string][]sim.LedgerEntry{}
	for name, s := range l.Sims {
		out[name] = s.Ledger()
	}
	return out
}

// e2eCharges counts approved authorizations of paymentID across every PSP.
func e2eCharges(l *Local, paymentID string) int {
	n := 0
	for _, s := range l.Sims {
		n += s.Totals(paymentID).Charges
	}
	return n
}

// e2eSameLedgers reports whether two ledger snapshots are identical.
func e2eSameLedgers(a, b map[string][]sim.LedgerEntry) bool { return reflect.DeepEqual(a, b) }

// e2eRoutingConfig reads the replicated routing configuration.
func e2eRoutingConfig(t *testing.T, l *Local) txswitch.RoutingConfig {
	t.Helper()
	r := e2eAdmin(t, l, e2eAnyAddr(t, l, true), "GET", "/v1/admin/config", nil)
	if r.Status != 200 {
		t.Fatalf("get config: %d %s", r.Status, r.Body)
	}
	var c txswitch.RoutingConfig
	r.decode(t, &c)
	return c
}

// e2ePutConfig replaces the routing configuration and waits until every
// running node applied it.
func e2ePutConfig(t *testing.T, l *Local, c txswitch.RoutingConfig) {
	t.Helper()
	r := e2eAdmin(t, l, e2eAnyAddr(t, l, true), "PUT", "/v1/admin/config", c)
	if r.Status/100 != 2 {
		t.Fatalf("put config: %d %s", r.Status, r.Body)
	}
	var got txswitch.RoutingConfig
	_ = json.Unmarshal(r.Body, &got)
	want := got.Version
	if want == 0 {
		want = e2eRoutingConfig(t, l).Version
	}
	waitFor(t, 10*time.Second, "every node to apply the config", func() bool {
		for _, n := range l.Nodes() {
			rc, ok := n.machine.Config()
			if !ok || rc.Version < want {
				return false
			}
		}
		return true
	})
}

// e2eTuneProviders shortens provider timeouts and breaker open durations so
// outage tests do not wait on production values.
func e2eTuneProviders(t *testing.T, l *Local, timeoutMs, openMs int64) {
	t.Helper()
	c := e2eRoutingConfig(t, l)
	for i := range c.Providers {
		c.Providers[i].TimeoutMillis = timeoutMs
		c.Providers[i].Breaker.OpenMillis = openMs
	}
	e2ePutConfig(t, l, c)
}

// e2eAdminStatus reads a node's status over HTTP.
func e2eAdminStatus(t *testing.T, l *Local, addr string) Status {
	t.Helper()
	r := e2eAdmin(t, l, addr, "GET", "/v1/admin/status", nil)
	if r.Status != 200 {
		t.Fatalf("status: %d %s", r.Status, r.Body)
	}
	var st Status
	r.decode(t, &st)
	return st
}

func e2eEventTypes(tl txswitch.TimelineResponse) []string {
	var out []string
	for _, e := range tl.Events {
		out = append(out, e.Type)
	}
	return out
}

func e2eTimelineOf(t *testing.T, l *Local, addr, orderID string) txswitch.TimelineResponse {
	t.Helper()
	r := e2eDo(t, l, addr, "GET", "/v1/orders/"+orderID+"/timeline", "", nil)
	if r.Status != 200 {
		t.Fatalf("timeline: %d %s", r.Status, r.Body)
	}
	var tl txswitch.TimelineResponse
	r.decode(t, &tl)
	return tl
}

func e2eExplainOf(t *testing.T, l *Local, addr, orderID string) txswitch.Explanation {
	t.Helper()
	r := e2eDo(t, l, addr, "GET", "/v1/orders/"+orderID+"/explain", "", nil)
	if r.Status != 200 {
		t.Fatalf("explain: %d %s", r.Status, r.Body)
	}
	var e txswitch.Explanation
	r.decode(t, &e)
	return e
}

func e2eEur(v int64) *txswitch.Money { return &txswitch.Money{Value: v, Currency: "EUR"} }

// e2eJsonUnmarshalStrict decodes b into v, refusing unknown fields.
func e2eJsonUnmarshalStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// e2eAnswer is a request's answer or transport error.
type e2eAnswer struct {
	r   e2eResp
	err error
}

// e2ePayInBackground sends a card payment for orderID to addr from a
// goroutine and returns where its answer arrives and the payment's id,
// once watch (a node's API address) shows the committed intent.
func e2ePayInBackground(t *testing.T, l *Local, addr, watch, orderID string) (<-chan e2eAnswer, string) {
	t.Helper()
	done := make(chan e2eAnswer, 1)
	go func() {
		r, err := e2eSend(addr, e2eRawReq{Method: "POST", Path: "/v1/orders/" + orderID + "/payments",
			Headers: e2eMerchantHeaders(l.APIKey, e2eNewKey("pay")), Body: []byte(`{"method":"card"}`)})
		done <- e2eAnswer{r, err}
	}()
	var paymentID string
	waitFor(t, 10*time.Second, "the committed intent", func() bool {
		if got := e2eGetOrder(t, l, watch, orderID); len(got.Payments) == 1 {
			paymentID = got.Payments[0].ID
		}
		return paymentID != ""
	})
	return done, paymentID
}

// e2eWaitVersion waits until every running node runs cluster version v
// (a new cluster moves its gate within a few checks of its start).
func e2eWaitVersion(t *testing.T, l *Local, v int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("cluster version %d on every node", v), func() bool {
		for _, n := range l.Nodes() {
			if !n.Service().VersionActive(v) {
				return false
			}
		}
		return true
	})
}

// e2eSetOrderExpiry gives every merchant orders that expire after seconds.
func e2eSetOrderExpiry(t *testing.T, l *Local, seconds int64) {
	t.Helper()
	cfg := e2eRoutingConfig(t, l)
	for i := range cfg.Merchants {
		cfg.Merchants[i].OrderExpirySeconds = seconds
	}
	e2ePutConfig(t, l, cfg)
}
