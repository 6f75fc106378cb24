package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

const orderBody = `{"reference":"shop-1234","amount":{"value":4998,"currency":"EUR"},` +
	`"customer":{"country":"NL","id":"cust-9","email":"a@example.com"},"channel":"online",` +
	`"lines":[{"sku":"SKU-1","quantity":2,"unit_amount":2499,"category":"books"}]}`

// TestRoutesReachService checks that every Service route calls the right
// method with the path id, the merchant, the idempotency key and the
// decoded body, and relays the reply.
func TestRoutesReachService(t *testing.T) {
	notif := `{"notification_id":"n1","idempotency_key":"pay_1-1","result":{"outcome":"approved","provider_ref":"r1"}}`
	// The PSP's words reach the service as they are, a NUL included (only
	// merchant and admin bodies refuse one).
	notifNUL := `{"notification_id":"n2","idempotency_key":"pay_1-1","result":{"outcome":"declined","message":"card\u0000blocked"}}`
	amt := &txswitch.Money{Value: 100, Currency: "EUR"}
	tests := []struct {
		name       string
		req        request
		wantStatus int
		want       call
	}{
		{"create order", request{"POST", "/v1/orders", mh("Idempotency-Key", "k 1"), orderBody}, 201,
			call{Method: "CreateOrder", Caller: txswitch.Caller{MerchantID: "m1", IdempotencyKey: "k 1"}, Req: txswitch.CreateOrderRequest{
				Reference: "shop-1234", Amount: txswitch.Money{Value: 4998, Currency: "EUR"},
				Customer: txswitch.Customer{Country: "NL", ID: "cust-9", Email: "a@example.com"}, Channel: "online",
				Lines: []txswitch.OrderLine{{SKU: "SKU-1", Quantity: 2, UnitAmount: 2499, Category: "books"}}}}},
		{"methods", request{"GET", "/v1/orders/ord_1/methods", mh(), ""}, 200,
			call{Method: "Methods", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "ord_1"}},
		{"timeline", request{"GET", "/v1/orders/ord_2/timeline", mh(), ""}, 200,
			call{Method: "Timeline", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "ord_2"}},
		{"explain", request{"GET", "/v1/orders/ord_3/explain", [][2]string{{"Authorization", "Bearer key-m2"}}, ""}, 200,
			call{Method: "Explain", Caller: txswitch.Caller{MerchantID: "m2"}, ID: "ord_3"}},
		{"create payment", request{"POST", "/v1/orders/ord_4/payments", mh(),
			`{"method":"card","amount":{"value":100,"currency":"EUR"},"capture":"manual","payment_data":{"token":"tok_1"}}`}, 201,
			call{Method: "CreatePayment", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "ord_4", Req: txswitch.CreatePaymentRequest{
				Method: "card", Amount: amt, Capture: "manual", PaymentData: map[string]string{"token": "tok_1"}}}},
		{"get payment", request{"GET", "/v1/payments/pay_5", mh(), ""}, 200,
			call{Method: "GetPayment", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "pay_5"}},
		{"capture", request{"POST", "/v1/payments/pay_6/captures", mh("Idempotency-Key", "cap-1"), `{"amount":{"value":100,"currency":"EUR"}}`}, 201,
			call{Method: "Capture", Caller: txswitch.Caller{MerchantID: "m1", IdempotencyKey: "cap-1"}, ID: "pay_6", Req: txswitch.CaptureRequest{Amount: amt}}},
		{"capture without body", request{"POST", "/v1/payments/pay_6/captures", [][2]string{{"Authorization", "Bearer key-m1"}}, ""}, 201,
			call{Method: "Capture", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "pay_6", Req: txswitch.CaptureRequest{}}},
		{"refund", request{"POST", "/v1/payments/pay_7/refunds", mh(), `{"amount":{"value":100,"currency":"EUR"},"reason":"return","channel":"pos"}`}, 201,
			call{Method: "Refund", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "pay_7", Req: txswitch.RefundRequest{Amount: amt, Reason: "return", Channel: "pos"}}},
		{"cancel", request{"POST", "/v1/payments/pay_8/cancel", [][2]string{{"Authorization", "Bearer key-m1"}}, ""}, 200,
			call{Method: "Cancel", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "pay_8"}},
		{"cancel with empty object", request{"POST", "/v1/payments/pay_8/cancel", mh(), ` { } `}, 200,
			call{Method: "Cancel", Caller: txswitch.Caller{MerchantID: "m1"}, ID: "pay_8"}},
		{"notify", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", sign("psp-secret", notif)}}, notif}, 200,
			call{Method: "Notify", ID: "simpsp", Req: txswitch.ProviderNotification{NotificationID: "n1", IdempotencyKey: "pay_1-1",
				Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "r1"}}}},
		{"notify with a NUL", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", sign("psp-secret", notifNUL)}}, notifNUL}, 200,
			call{Method: "Notify", ID: "simpsp", Req: txswitch.ProviderNotification{NotificationID: "n2", IdempotencyKey: "pay_1-1",
				Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeDeclined, Message: "card\x00blocked"}}}},
		{"get config", request{"GET", "/v1/admin/config", adminHeaders(), ""}, 200, call{Method: "GetConfig"}},
		{"put config", request{"PUT", "/v1/admin/config", adminHeaders(),
			`{"version":0,"merchants":[{"id":"m1","name":"Shop","api_key_hashes":["ab"]}],"methods":[],"providers":[{"name":"p","base_url":"http://p","timeout_ms":100,"breaker":{"consecutive_failures":5,"failure_ratio":0.5,"min_requests":10,"interval_ms":1000,"open_ms":100,"half_open_max":1}}]}`}, 200,
			call{Method: "PutConfig", Req: txswitch.RoutingConfig{Merchants: []txswitch.MerchantConfig{{ID: "m1", Name: "Shop", APIKeyHashes: []string{"ab"}}},
				Methods: []txswitch.MethodConfig{}, Providers: []txswitch.ProviderConfig{{Name: "p", BaseURL: "http://p", TimeoutMillis: 100,
					Breaker: txswitch.BreakerConfig{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 10, IntervalMillis: 1000, OpenMillis: 100, HalfOpenMax: 1}}}}}},
		{"review", request{"POST", "/v1/admin/payments/pay_9/review", adminHeaders(), `{"decision":"approve","note":"ok"}`}, 200,
			call{Method: "ReviewPayment", ID: "pay_9", Req: txswitch.ReviewRequest{Decision: "approve", Note: "ok"}}},
		{"resolve", request{"POST", "/v1/admin/payments/pay_9/resolve", adminHeaders(), `{"outcome":"failed","note":"voided at the PSP"}`}, 200,
			call{Method: "ResolvePayment", ID: "pay_9", Req: txswitch.ResolveRequest{Outcome: "failed", Note: "voided at the PSP"}}},
		{"resolve a refund", request{"POST", "/v1/admin/payments/pay_9/resolve", adminHeaders(), `{"outcome":"approved","note":"psp_a refunded 3.00","operation":"ref_1"}`}, 200,
			call{Method: "ResolvePayment", ID: "pay_9", Req: txswitch.ResolveRequest{Outcome: "approved", Note: "psp_a refunded 3.00", Operation: "ref_1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t, nil)
			resp := n.do(t, tt.req)
			if resp.status != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.status, tt.wantStatus, resp.body)
			}
			if ct := resp.headers["Content-Type"]; ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			calls := n.svc.businessCalls()
			if len(calls) != 1 {
				t.Fatalf("service calls %+v, want exactly one", calls)
			}
			got := calls[0]
			if !got.Deadline {
				t.Error("the service context carries no deadline")
			}
			got.Deadline = false
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("service saw\n %+v\nwant\n %+v", got, tt.want)
			}
			// The reply is the fake's bytes, verbatim.
			if got.Method != "CreateOrder" {
				want, _ := echo(tt.wantStatus, got.Method, got.Caller, got.ID, got.Req)
				if string(resp.body) != string(want.Body) {
					t.Errorf("body %s, want %s", resp.body, want.Body)
				}
			}
		})
	}
}

// TestOrdersRoundTrip creates an order and reads it back, and checks that
// another merchant gets the Service's 404.
func TestOrdersRoundTrip(t *testing.T) {
	n := newTestNode(t, nil)
	resp := n.do(t, request{"POST", "/v1/orders", mh(), orderBody})
	if resp.status != 201 {
		t.Fatalf("create: %d %s", resp.status, resp.body)
	}
	var o txswitch.Order
	if err := json.Unmarshal(resp.body, &o); err != nil || !strings.HasPrefix(o.ID, "ord_") {
		t.Fatalf("created order %s: %v", resp.body, err)
	}
	got := n.do(t, request{"GET", "/v1/orders/" + o.ID, mh(), ""})
	if got.status != 200 || string(got.body) != string(resp.body) {
		t.Fatalf("get: %d %s, want 200 %s", got.status, got.body, resp.body)
	}
	other := n.do(t, request{"GET", "/v1/orders/" + o.ID, [][2]string{{"Authorization", "Bearer key-m2"}}, ""})
	if code, _ := other.errCode(); other.status != 404 || code != "not_found" {
		t.Fatalf("other merchant: %d %s", other.status, other.body)
	}
}

func TestAdminClusterRoutes(t *testing.T) {
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantCall   string
		wantBody   string
	}{
		{"status", request{"GET", "/v1/admin/status", adminHeaders(), ""}, 200, "Status", `{"leader":1,"members":[1,2,3]}`},
		{"add member", request{"POST", "/v1/admin/members", adminHeaders(), `{"raft_addr":"10.0.0.4:7000","api_addr":"10.0.0.4:8080"}`}, 201,
			"AddMember 10.0.0.4:7000 10.0.0.4:8080", `{"id":4}`},
		{"remove member", request{"DELETE", "/v1/admin/members/3", adminHeaders(), ""}, 200, "RemoveMember 3", `{"id":3,"removed":true}`},
		{"transfer leader", request{"POST", "/v1/admin/leader", adminHeaders(), `{"to":2}`}, 200, "TransferLeader 2", `{"to":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t, nil)
			resp := n.do(t, tt.req)
			if resp.status != tt.wantStatus || string(resp.body) != tt.wantBody {
				t.Fatalf("got %d %s, want %d %s", resp.status, resp.body, tt.wantStatus, tt.wantBody)
			}
			if calls := n.admin.Calls(); len(calls) != 1 || calls[0] != tt.wantCall {
				t.Fatalf("admin calls %q, want [%q]", calls, tt.wantCall)
			}
		})
	}
	t.Run("no admin ops", func(t *testing.T) {
		n := newTestNode(t, func(o *Options) { o.Admin = nil })
		resp := n.do(t, request{"GET", "/v1/admin/status", adminHeaders(), ""})
		if code, _ := resp.errCode(); resp.status != 404 || code != "not_found" {
			t.Fatalf("got %d %s", resp.status, resp.body)
		}
		// Config is the Service's, so it still works.
		if resp := n.do(t, request{"GET", "/v1/admin/config", adminHeaders(), ""}); resp.status != 200 {
			t.Fatalf("config: %d %s", resp.status, resp.body)
		}
	})
	t.Run("admin disabled", func(t *testing.T) {
		n := newTestNode(t, func(o *Options) { o.AdminToken = "" })
		for _, r := range []request{
			{"GET", "/v1/admin/config", adminHeaders(), ""},
			{"GET", "/v1/admin/status", [][2]string{{"Authorization", "Bearer "}}, ""},
			{"POST", "/v1/admin/leader", adminHeaders(), `{"to":2}`},
		} {
			resp := n.do(t, r)
			if code, _ := resp.errCode(); resp.status != 404 || code != "not_found" {
				t.Fatalf("%s %s: %d %s", r.method, r.path, resp.status, resp.body)
			}
		}
		if len(n.svc.Calls()) != 0 || len(n.admin.Calls()) != 0 {
			t.Fatalf("calls reached the service %v or admin %v", n.svc.Calls(), n.admin.Calls())
		}
	})
}

func TestHealthAndReadiness(t *testing.T) {
	cl := &fakeCluster{leader: false, addr: "10.0.0.1:8080"}
	n := newTestNode(t, func(o *Options) { o.Cluster = cl })
	if r := n.do(t, request{"GET", "/healthz", nil, ""}); r.status != 200 || string(r.body) != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	if r := n.do(t, request{"GET", "/readyz", nil, ""}); r.status != 200 {
		t.Fatalf("readyz ready: %d %s", r.status, r.body)
	}
	cl.mu.Lock()
	cl.notReady = errString("catching up")
	cl.mu.Unlock()
	r := n.do(t, request{"GET", "/readyz", nil, ""})
	if code, _ := r.errCode(); r.status != 503 || code != "not_ready" || r.headers["Retry-After"] != "1" || r.headers["X-Txswitch-Leader"] != "10.0.0.1:8080" {
		t.Fatalf("readyz not ready: %d %v %s", r.status, r.headers, r.body)
	}
	if r := n.do(t, request{"GET", "/healthz", nil, ""}); r.status != 200 {
		t.Fatalf("healthz while not ready: %d", r.status)
	}
}

// A node removed from the cluster (raft keeps it a follower of the leader
// it last knew, for ever) is not ready and refuses every request, with
// 503 removed_from_cluster, Retry-After and the leader it knew, before
// its key is checked (its configuration no longer follows the cluster's)
// and without forwarding: only its admin status still answers, so that
// an operator sees why.
func TestRemovedNodeRefusesAndIsNotReady(t *testing.T) {
	cl := &fakeCluster{leader: false, addr: "10.0.0.1:8080", removed: true}
	n := newTestNode(t, func(o *Options) { o.Cluster = cl })
	for _, r := range []request{
		{"POST", "/v1/orders", mh("Idempotency-Key", "k1"), orderBody},
		{"GET", "/v1/orders/ord_1", mh(), ""},
		{"GET", "/v1/orders/ord_1", nil, ""},
		{"GET", "/v1/orders/ord_1/methods", mh(), ""},
		{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}}, `{}`},
		{"GET", "/v1/admin/config", adminHeaders(), ""},
		{"DELETE", "/v1/admin/members/3", adminHeaders(), ""},
		{"GET", "/readyz", nil, ""},
	} {
		resp := n.do(t, r)
		if code, _ := resp.errCode(); resp.status != 503 || code != "removed_from_cluster" {
			t.Fatalf("%s %s: %d %s, want 503 removed_from_cluster", r.method, r.path, resp.status, resp.body)
		}
		if resp.headers["Retry-After"] == "" || resp.headers["X-Txswitch-Leader"] != "10.0.0.1:8080" {
			t.Fatalf("%s %s: headers %v, want Retry-After and the leader hint", r.method, r.path, resp.headers)
		}
	}
	if calls := n.svc.Calls(); len(calls) != 0 {
		t.Fatalf("a removed node called the service: %v", calls)
	}
	if resp := n.do(t, request{"GET", "/v1/admin/status", adminHeaders(), ""}); resp.status != 200 {
		t.Fatalf("admin status on a removed node: %d %s", resp.status, resp.body)
	}
	if calls := n.admin.Calls(); len(calls) != 1 || calls[0] != "Status" {
		t.Fatalf("admin calls %q, want [Status]", calls)
	}
	if r := n.do(t, request{"GET", "/healthz", nil, ""}); r.status != 200 {
		t.Fatalf("healthz on a removed node: %d", r.status)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestRequestID(t *testing.T) {
	n := newTestNode(t, nil)
	r := n.do(t, request{"GET", "/healthz", [][2]string{{"X-Request-Id", "abc-123"}}, ""})
	if r.headers["X-Request-Id"] != "abc-123" {
		t.Fatalf("echoed id %q", r.headers["X-Request-Id"])
	}
	a := n.do(t, request{"GET", "/healthz", nil, ""}).headers["X-Request-Id"]
	b := n.do(t, request{"GET", "/healthz", [][2]string{{"X-Request-Id", strings.Repeat("x", 200)}}, ""}).headers["X-Request-Id"]
	if a == "" || b == "" || a == b || len(b) > 128 {
		t.Fatalf("generated ids %q %q", a, b)
	}
}

// TestListIntentsQuery: the intents listing takes state, limit and after
// from the query, the review queue limit and after, and both refuse
// anything else before the service is asked.
func TestListIntentsQuery(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		headers   [][2]string
		want      *intentsQuery // nil: refused
		wantCode  string
		wantField string
	}{
		{"everything", "/v1/admin/intents", adminHeaders(), &intentsQuery{}, "", ""},
		{"a page of one state", "/v1/admin/intents?state=amount_mismatch&limit=20&after=pay_1-a1", adminHeaders(),
			&intentsQuery{State: "amount_mismatch", After: "pay_1-a1", Limit: 20}, "", ""},
		{"a typo", "/v1/admin/intents?stat=in_doubt", adminHeaders(), nil, "invalid_query", "stat"},
		{"limit not a number", "/v1/admin/intents?limit=ten", adminHeaders(), nil, "invalid_query", "limit"},
		{"limit zero", "/v1/admin/intents?limit=0", adminHeaders(), nil, "invalid_query", "limit"},
		{"a merchant key", "/v1/admin/intents", mh(), nil, "unauthorized", ""},
		{"the review queue", "/v1/admin/reviews?limit=5&after=0000/ord_1", adminHeaders(), &intentsQuery{After: "0000/ord_1", Limit: 5}, "", ""},
		{"the review queue has no states", "/v1/admin/reviews?state=in_doubt", adminHeaders(), nil, "invalid_query", "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t, nil)
			resp := n.do(t, request{"GET", tt.path, tt.headers, ""})
			calls := n.svc.Calls()
			if tt.want == nil {
				code, field := resp.errCode()
				if resp.status/100 != 4 || code != tt.wantCode || field != tt.wantField || len(calls) != 0 {
					t.Fatalf("got %d %s (code %q field %q), calls %v; want %s on %q and no call", resp.status, resp.body, code, field, calls, tt.wantCode, tt.wantField)
				}
				return
			}
			method := "ListIntents"
			if strings.HasPrefix(tt.path, "/v1/admin/reviews") {
				method = "ListReviews"
			}
			if resp.status != 200 || len(calls) != 1 || calls[0].Method != method || !reflect.DeepEqual(calls[0].Req, *tt.want) {
				t.Fatalf("got %d %s, calls %+v; want %s %+v", resp.status, resp.body, calls, method, *tt.want)
			}
		})
	}
}
