package providers_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/providers/sim"
	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
	"go.uber.org/zap/zaptest"
)

func startSim(t *testing.T) *sim.Server {
	t.Helper()
	s := sim.New(sim.Config{Seed: 1, Logger: zaptest.NewLogger(t)})
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func eur(v int64) txswitch.Money { return txswitch.Money{Value: v, Currency: "EUR"} }

func authorize(key, pay string, v int64) txswitch.ProviderRequest {
	return txswitch.ProviderRequest{IdempotencyKey: key, Op: txswitch.OpAuthorize, PaymentID: pay, OrderID: "ord_1",
		MerchantID: "m1", Method: "card", Amount: eur(v), Country: "NL"}
}

func cfgFor(url string, timeoutMs int64) txswitch.ProviderConfig {
	return txswitch.ProviderConfig{Name: "psp", BaseURL: url, TimeoutMillis: timeoutMs}
}

// TestOperationsOverLoopback runs every operation against the simulated PSP
// and checks the client's view against the PSP's ledger.
func TestOperationsOverLoopback(t *testing.T) {
	s := startSim(t)
	p := providers.NewHTTPProvider(cfgFor(s.URL(), 2000), nil)
	ctx := context.Background()

	auth, err := p.Do(ctx, authorize("pay_1-1", "pay_1", 1000))
	if err != nil || auth.Outcome != txswitch.OutcomeApproved || auth.ProviderRef == "" {
		t.Fatalf("authorize: %+v %v", auth, err)
	}
	auth2, err := p.Do(ctx, authorize("pay_2-1", "pay_2", 500))
	if err != nil || auth2.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("authorize 2: %+v %v", auth2, err)
	}
	steps := []struct {
		req  txswitch.ProviderRequest
		want txswitch.ProviderOutcome
		code string
	}{
		{txswitch.ProviderRequest{IdempotencyKey: "cap_1", Op: txswitch.OpCapture, PaymentID: "pay_1", Amount: eur(600), ProviderRef: auth.ProviderRef}, txswitch.OutcomeApproved, ""},
		{txswitch.ProviderRequest{IdempotencyKey: "cap_2", Op: txswitch.OpCapture, PaymentID: "pay_1", Amount: eur(500), ProviderRef: auth.ProviderRef}, txswitch.OutcomeDeclined, sim.DeclineExceedsAuthorization},
		{txswitch.ProviderRequest{IdempotencyKey: "ref_1", Op: txswitch.OpRefund, PaymentID: "pay_1", Amount: eur(600), ProviderRef: auth.ProviderRef}, txswitch.OutcomeApproved, ""},
		{txswitch.ProviderRequest{IdempotencyKey: "ref_2", Op: txswitch.OpRefund, PaymentID: "pay_1", Amount: eur(1), ProviderRef: auth.ProviderRef}, txswitch.OutcomeDeclined, sim.DeclineExceedsCaptured},
		{txswitch.ProviderRequest{IdempotencyKey: "cnl_1", Op: txswitch.OpCancel, PaymentID: "pay_1", ProviderRef: auth.ProviderRef}, txswitch.OutcomeDeclined, sim.DeclineAlreadyCaptured},
		{txswitch.ProviderRequest{IdempotencyKey: "cnl_2", Op: txswitch.OpCancel, PaymentID: "pay_2", ProviderRef: auth2.ProviderRef}, txswitch.OutcomeApproved, ""},
		{txswitch.ProviderRequest{IdempotencyKey: "pay_1-1", Op: txswitch.OpStatus}, txswitch.OutcomeApproved, ""},
		{txswitch.ProviderRequest{IdempotencyKey: "pay_9-1", Op: txswitch.OpStatus}, txswitch.OutcomeNotFound, ""},
		{authorize("pay_3-1", "pay_3", 2051), txswitch.OutcomeDeclined, "insufficient_funds"},
	}
	for _, st := range steps {
		res, err := p.Do(ctx, st.req)
		if err != nil || res.Outcome != st.want || res.Code != st.code {
			t.Errorf("%s %s: got %+v %v, want %s/%s", st.req.Op, st.req.IdempotencyKey, res, err, st.want, st.code)
		}
	}
	if got := s.Totals("pay_1"); got != (sim.Totals{Charges: 1, Authorized: 1000, Captured: 600, Refunded: 600}) {
		t.Fatalf("pay_1 totals at the PSP = %+v", got)
	}
	if got := s.Totals("pay_2"); got != (sim.Totals{Charges: 1}) {
		t.Fatalf("pay_2 totals at the PSP = %+v", got)
	}
}

func TestReplayAndKeyReuseThroughClient(t *testing.T) {
	s := startSim(t)
	p := providers.NewHTTPProvider(cfgFor(s.URL(), 2000), nil)
	ctx := context.Background()
	req := authorize("pay_1-1", "pay_1", 1000)
	a, err1 := p.Do(ctx, req)
	b, err2 := p.Do(ctx, req)
	if err1 != nil || err2 != nil || a.ProviderRef != b.ProviderRef {
		t.Fatalf("replay: %+v %v / %+v %v", a, err1, b, err2)
	}
	req.Amount.Value = 999
	_, err := p.Do(ctx, req)
	pe := providerError(t, err)
	if pe.Definitive || pe.Code != providers.CodeKeyReused {
		t.Fatalf("key reuse = %v, want in doubt %s", pe, providers.CodeKeyReused)
	}
	if l := s.LedgerFor("pay_1"); len(l) != 1 {
		t.Fatalf("ledger = %+v, want one entry", l)
	}
}

// A status inquiry that finds a key unknown fences it at the PSP: the
// request under that key, arriving late, is refused definitively and books
// nothing.
func TestStatusInquiryFencesTheKey(t *testing.T) {
	s := startSim(t)
	p := providers.NewHTTPProvider(cfgFor(s.URL(), 2000), nil)
	ctx := context.Background()
	req := authorize("pay_9-1", "pay_9", 1000)
	st, err := p.Do(ctx, txswitch.ProviderRequest{IdempotencyKey: req.IdempotencyKey, Op: txswitch.OpStatus, PaymentID: req.PaymentID, Method: req.Method})
	if err != nil || st.Outcome != txswitch.OutcomeNotFound {
		t.Fatalf("status: %+v %v", st, err)
	}
	_, err = p.Do(ctx, req)
	if pe := providerError(t, err); !pe.Definitive || pe.Code != providers.CodeKeyFenced {
		t.Fatalf("late authorize = %v, want definitive %s", pe, providers.CodeKeyFenced)
	}
	if l := s.LedgerFor("pay_9"); len(l) != 0 {
		t.Fatalf("a fenced request was booked: %+v", l)
	}
	if st := s.Stats(); st.Fenced != 1 || st.RefusedFenced != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func providerError(t *testing.T, err error) *txswitch.ProviderError {
	t.Helper()
	var pe *txswitch.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ProviderError", err, err)
	}
	return pe
}

// closedPort returns an address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClassificationAgainstSim checks the classification for the faults
// the simulated PSP produces, and that the ledger agrees: definitive means
// nothing was booked, in doubt cases did book the charge.
func TestClassificationAgainstSim(t *testing.T) {
	tests := []struct {
		name       string
		behaviour  sim.Behaviour
		definitive bool
		code       string
		charges    int
	}{
		{"refuse", sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageRefuse}}, true, providers.CodeConnectionRefused, 0},
		{"unavailable", sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageUnavailable}}, true, "http_503", 0},
		{"error rate", sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"card": {ErrorRate: 1}}}, true, "http_503", 0},
		{"charge then time out", sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"*": {ChargeThenTimeoutRate: 1}}}, false, providers.CodeTimeout, 1},
		{"malformed", sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"*": {MalformedRate: 1}}}, false, providers.CodeMalformed, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t)
			timeout := int64(5000) // generous: a loaded machine must not turn answers into timeouts
			if tc.code == providers.CodeTimeout {
				timeout = 200
			}
			p := providers.NewHTTPProvider(cfgFor(s.URL(), timeout), providers.NewHTTPClient(4))
			if err := s.SetBehaviour(tc.behaviour); err != nil {
				t.Fatal(err)
			}
			_, err := p.Do(context.Background(), authorize("pay_1-1", "pay_1", 1000))
			pe := providerError(t, err)
			if pe.Definitive != tc.definitive || pe.Code != tc.code || pe.Provider != "psp" || pe.Op != txswitch.OpAuthorize {
				t.Fatalf("got %v, want definitive=%v code=%s", pe, tc.definitive, tc.code)
			}
			if got := s.Totals("pay_1").Charges; got != tc.charges {
				t.Fatalf("PSP booked %d charges, want %d", got, tc.charges)
			}
			// Resolution by status inquiry once the PSP behaves.
			s.ResetBehaviour()
			resolver := providers.NewHTTPProvider(cfgFor(s.URL(), 5000), nil)
			st, err := resolver.Do(context.Background(), txswitch.ProviderRequest{IdempotencyKey: "pay_1-1", Op: txswitch.OpStatus})
			want := txswitch.OutcomeNotFound
			if tc.charges == 1 {
				want = txswitch.OutcomeApproved
			}
			if err != nil || st.Outcome != want {
				t.Fatalf("status after the fault: %+v %v, want %s", st, err, want)
			}
		})
	}
}

func TestClassificationOfDialFailures(t *testing.T) {
	for _, u := range []string{"http://" + closedPort(t), "http://no-such-host.invalid"} {
		p := providers.NewHTTPProvider(cfgFor(u, 2000), nil)
		_, err := p.Do(context.Background(), authorize("k", "p", 100))
		if pe := providerError(t, err); !pe.Definitive || pe.Code != providers.CodeConnectionRefused {
			t.Errorf("%s: %v, want definitive connection_refused", u, pe)
		}
	}
}

// TestClassificationOfAnswers uses hand-written PSP answers for the cases
// the simulator does not produce.
func TestClassificationOfAnswers(t *testing.T) {
	type answer func(w http.ResponseWriter, r *http.Request)
	status := func(code int, hdr map[string]string, body string) answer {
		return func(w http.ResponseWriter, _ *http.Request) {
			for k, v := range hdr {
				w.Header().Set(k, v)
			}
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
		}
	}
	notProcessed := map[string]string{wire.HeaderProcessed: "false"}
	tests := []struct {
		name       string
		op         txswitch.ProviderOp
		answer     answer
		outcome    txswitch.ProviderOutcome // for results
		definitive bool
		code       string // "" for results
	}{
		{"decline on 402", txswitch.OpAuthorize, status(402, nil, `{"outcome":"declined","code":"do_not_honor"}`), txswitch.OutcomeDeclined, false, ""},
		{"pending", txswitch.OpAuthorize, status(200, nil, `{"outcome":"pending","redirect_url":"http://bank"}`), txswitch.OutcomePending, false, ""},
		{"503 not processed", txswitch.OpAuthorize, status(503, notProcessed, `{"error":{"code":"unavailable"}}`), "", true, "http_503"},
		{"502 not processed", txswitch.OpCapture, status(502, notProcessed, ``), "", true, "http_502"},
		{"503 without header", txswitch.OpAuthorize, status(503, nil, ``), "", false, "http_503"},
		{"409 key fenced: definitive", txswitch.OpAuthorize, status(409, nil, `{"error":{"code":"idempotency_key_fenced"}}`), "", true, providers.CodeKeyFenced},
		{"409 other: in doubt", txswitch.OpAuthorize, status(409, nil, `{"error":{"code":"in_progress"}}`), "", false, "http_409"},
		{"500 even if it says not processed", txswitch.OpAuthorize, status(500, notProcessed, ``), "", false, "http_500"},
		{"504", txswitch.OpRefund, status(504, nil, ``), "", false, "http_504"},
		{"400 refused", txswitch.OpAuthorize, status(400, nil, `{"error":{"code":"invalid_request"}}`), "", true, "http_400"},
		{"429 refused", txswitch.OpAuthorize, status(429, nil, ``), "", true, "http_429"},
		{"409 in progress", txswitch.OpAuthorize, status(409, nil, `{"error":{"code":"in_progress"}}`), "", false, "http_409"},
		{"redirect is not followed", txswitch.OpAuthorize, status(301, map[string]string{"Location": "/elsewhere"}, ``), "", false, "http_301"},
		{"garbled body", txswitch.OpAuthorize, status(200, nil, `{"outcome":`), "", false, providers.CodeMalformed},
		{"unknown outcome", txswitch.OpAuthorize, status(200, nil, `{"outcome":"maybe"}`), "", false, providers.CodeMalformed},
		{"not_found answers only status", txswitch.OpAuthorize, status(200, nil, `{"outcome":"not_found"}`), "", false, providers.CodeMalformed},
		{"oversized body", txswitch.OpAuthorize, status(200, nil, `{"outcome":"approved","message":"`+strings.Repeat("x", wire.MaxResponseBody)+`"}`), "", false, providers.CodeMalformed},
		{"reset after reading the request", txswitch.OpAuthorize, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, "", false, providers.CodeConnectionReset},
		{"slow answer", txswitch.OpAuthorize, func(w http.ResponseWriter, r *http.Request) {
			// Reading to EOF lets net/http notice the client hanging up.
			_, _ = io.ReadAll(r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, "", false, providers.CodeTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := httptest.NewServer(http.HandlerFunc(tc.answer))
			defer hs.Close()
			// A generous timeout keeps a loaded machine from turning answers
			// into timeouts; only the slow case waits for it.
			timeout := int64(5000)
			if tc.code == providers.CodeTimeout {
				timeout = 100
			}
			p := providers.NewHTTPProvider(cfgFor(hs.URL, timeout), providers.NewHTTPClient(2))
			req := authorize("k", "p", 100)
			req.Op = tc.op
			res, err := p.Do(context.Background(), req)
			if tc.code == "" {
				if err != nil || res.Outcome != tc.outcome {
					t.Fatalf("got %+v %v, want outcome %s", res, err, tc.outcome)
				}
				return
			}
			pe := providerError(t, err)
			if pe.Definitive != tc.definitive || pe.Code != tc.code {
				t.Fatalf("got %v, want definitive=%v code=%s", pe, tc.definitive, tc.code)
			}
		})
	}
}

func TestCallerDeadlineShorterThanTimeout(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer hs.Close()
	p := providers.NewHTTPProvider(cfgFor(hs.URL, 60_000), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Do(ctx, authorize("k", "p", 100))
	if pe := providerError(t, err); pe.Definitive || pe.Code != providers.CodeTimeout {
		t.Fatalf("got %v, want in doubt timeout", pe)
	}
}

func TestInvalidRequestsAreNotSent(t *testing.T) {
	calls := 0
	hs := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }))
	defer hs.Close()
	for name, tc := range map[string]struct {
		base string
		req  txswitch.ProviderRequest
	}{
		"empty key":    {hs.URL, authorize("", "p", 100)},
		"unknown op":   {hs.URL, txswitch.ProviderRequest{IdempotencyKey: "k", Op: "teleport"}},
		"relative url": {"/v1", authorize("k", "p", 100)},
	} {
		p := providers.NewHTTPProvider(cfgFor(tc.base, 1000), nil)
		_, err := p.Do(context.Background(), tc.req)
		if pe := providerError(t, err); !pe.Definitive || pe.Code != providers.CodeInvalidRequest {
			t.Errorf("%s: %v", name, pe)
		}
	}
	if calls != 0 {
		t.Fatalf("%d invalid requests reached the PSP", calls)
	}
}

// TestConcurrentRetriesChargeOnce: many retries of one attempt racing each
// other still move money once.
func TestConcurrentRetriesChargeOnce(t *testing.T) {
	s := startSim(t)
	p := providers.NewHTTPProvider(cfgFor(s.URL(), 5000), nil)
	const n = 16
	refs := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			res, err := p.Do(context.Background(), authorize("pay_1-1", "pay_1", 1000))
			refs <- res.ProviderRef
			errs <- err
		}()
	}
	seen := map[string]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[<-refs] = true
	}
	if len(seen) != 1 {
		t.Fatalf("retries saw %d different references: %v", len(seen), seen)
	}
	if got := s.Totals("pay_1"); got.Charges != 1 || len(s.LedgerFor("pay_1")) != 1 {
		t.Fatalf("PSP totals %+v, ledger %+v", got, s.LedgerFor("pay_1"))
	}
}

// net/http re-sends a request that carries an Idempotency-Key on a fresh
// connection when a reused one broke after the request was written. The
// first copy may have been processed, so an answer to the copy that says
// "not processed" must not make the failure definitive: that would fail
// the payment over to another provider after a charge (a double charge).
func TestTransparentResendIsNeverDefinitive(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		key := r.Header.Get(wire.HeaderIdempotencyKey)
		mu.Lock()
		seen[key]++
		n := seen[key]
		mu.Unlock()
		switch {
		case key == "k1": // keeps the connection for the next request
			_, _ = io.WriteString(w, `{"outcome":"approved","provider_ref":"r1"}`)
		case n == 1: // charged, and the answer is lost with the connection
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
		default: // the PSP now sheds load before it looks at the key
			w.Header().Set(wire.HeaderProcessed, "false")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer hs.Close()
	p := providers.NewHTTPProvider(cfgFor(hs.URL, 5000), providers.NewHTTPClient(2))
	if res, err := p.Do(context.Background(), authorize("k1", "p1", 100)); err != nil || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("first call: %+v %v", res, err)
	}
	_, err := p.Do(context.Background(), authorize("k2", "p2", 100))
	pe := providerError(t, err)
	mu.Lock()
	sent := seen["k2"]
	mu.Unlock()
	if sent != 2 {
		t.Fatalf("the PSP got k2 %d times: the transport did not re-send it, so this test no longer exercises the re-send", sent)
	}
	if pe.Definitive {
		t.Fatalf("%v: definitive after a transparent re-send of a request the PSP may have processed", pe)
	}
}
