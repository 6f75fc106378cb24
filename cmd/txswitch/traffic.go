package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	txswitch "github.com/txswitch/txswitch/switch"
)

// trafficGen sends the demo's shoppers: open-loop arrivals at a rate, each
// creating an order, asking which methods fit, and paying with one of them;
// some capture manually and some return goods (partial refunds).
type trafficGen struct {
	addrs  []string
	apiKey string
	rate   float64
	client *http.Client
	wg     sync.WaitGroup
	// inflight bounds concurrent shoppers; an arrival finding it full is
	// skipped and counted, so a slow cluster shows up as skipped arrivals
	// instead of an unbounded pile of goroutines.
	inflight chan struct{}
	seq      atomic.Uint64

	mu    sync.Mutex
	stats trafficStats
}

type trafficStats struct {
	orders, payments, approved, declined, failed, errors, skipped uint64
	pending, inDoubt                                              int64 // currently unresolved
}

// shopper markets with their currency, so method selection has something
// to choose from (iDEAL in NL, Bancontact in BE, MobilePay in DK...).
var markets = []struct{ country, currency string }{
	{"NL", "EUR"}, {"NL", "EUR"}, {"BE", "EUR"}, {"DE", "EUR"}, {"DK", "DKK"},
	{"FI", "EUR"}, {"FR", "EUR"}, {"GB", "GBP"}, {"US", "USD"}, {"SE", "SEK"},
}

func newTrafficGen(addrs []string, apiKey string, rate float64) *trafficGen {
	return &trafficGen{
		addrs: addrs, apiKey: apiKey, rate: rate,
		client:   &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		inflight: make(chan struct{}, 256),
	}
}

func (g *trafficGen) run(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / g.rate)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case g.inflight <- struct{}{}:
		default:
			g.count(func(s *trafficStats) { s.skipped++ })
			continue
		}
		g.wg.Add(1)
		go func(n uint64) {
			defer g.wg.Done()
			defer func() { <-g.inflight }()
			g.shopper(ctx, n)
		}(g.seq.Add(1))
	}
}

func (g *trafficGen) wait() { g.wg.Wait() }

func (g *trafficGen) count(f func(*trafficStats)) {
	g.mu.Lock()
	f(&g.stats)
	g.mu.Unlock()
}

func (g *trafficGen) snapshot() trafficStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

func (g *trafficGen) shopper(ctx context.Context, n uint64) {
	r := rand.New(rand.NewPCG(n, 0x7478))
	addr := g.addrs[int(n)%len(g.addrs)]
	m := markets[r.IntN(len(markets))]
	amount := int64(500 + r.IntN(19500))
	var o txswitch.Order
	if !g.do(ctx, addr, "POST", "/v1/orders", fmt.Sprintf("demo-o-%d", n), txswitch.CreateOrderRequest{
		Reference: fmt.Sprintf("demo-%d", n), Amount: txswitch.Money{Value: amount, Currency: m.currency},
		Customer: txswitch.Customer{Country: m.country, ID: fmt.Sprintf("cust-%d", r.IntN(1000))}, Channel: txswitch.ChannelOnline,
	}, &o) {
		return
	}
	g.count(func(s *trafficStats) { s.orders++ })
	var ms txswitch.MethodsResponse
	if !g.do(ctx, addr, "GET", "/v1/orders/"+o.ID+"/methods", "", nil, &ms) || len(ms.Methods) == 0 {
		return
	}
	method := ms.Methods[r.IntN(len(ms.Methods))].Method
	capture := "automatic"
	if r.IntN(5) == 0 {
		capture = "manual"
	}
	var p txswitch.Payment
	if !g.do(ctx, addr, "POST", "/v1/orders/"+o.ID+"/payments", fmt.Sprintf("demo-p-%d", n),
		txswitch.CreatePaymentRequest{Method: method, Capture: capture}, &p) {
		return
	}
	g.count(func(s *trafficStats) { s.payments++ })
	p = g.settle(ctx, addr, p)
	switch p.Status {
	case txswitch.PaymentAuthorized:
		g.count(func(s *trafficStats) { s.approved++ })
		if !g.do(ctx, addr, "POST", "/v1/payments/"+p.ID+"/captures", fmt.Sprintf("demo-c-%d", n), txswitch.CaptureRequest{}, &p) {
			return
		}
	case txswitch.PaymentCaptured:
		g.count(func(s *trafficStats) { s.approved++ })
	case txswitch.PaymentDeclined:
		g.count(func(s *trafficStats) { s.declined++ })
		return
	default:
		g.count(func(s *trafficStats) { s.failed++ })
		return
	}
	// One shopper in ten returns part of the order, online or in a store.
	if r.IntN(10) == 0 && p.Captured.Value > 1 {
		channel := []string{txswitch.ChannelOnline, txswitch.ChannelPOS}[r.IntN(2)]
		amt := txswitch.Money{Value: p.Captured.Value / 2, Currency: p.Captured.Currency}
		g.do(ctx, addr, "POST", "/v1/payments/"+p.ID+"/refunds", fmt.Sprintf("demo-r-%d", n),
			txswitch.RefundRequest{Amount: &amt, Reason: "return", Channel: channel}, nil)
	}
}

// settle follows a pending (redirect) or in-doubt payment until it has a
// final status, as a shop's order page would.
func (g *trafficGen) settle(ctx context.Context, addr string, p txswitch.Payment) txswitch.Payment {
	var gauge *int64
	switch p.Status {
	case txswitch.PaymentPending:
		gauge = &g.stats.pending
	case txswitch.PaymentInDoubt:
		gauge = &g.stats.inDoubt
	default:
		return p
	}
	g.count(func(*trafficStats) { *gauge++ })
	defer g.count(func(*trafficStats) { *gauge-- })
	for i := 0; i < 60 && (p.Status == txswitch.PaymentPending || p.Status == txswitch.PaymentInDoubt); i++ {
		select {
		case <-ctx.Done():
			return p
		case <-time.After(500 * time.Millisecond):
		}
		g.do(ctx, addr, "GET", "/v1/payments/"+p.ID, "", nil, &p)
	}
	return p
}

// do sends one request; false means it did not succeed (counted).
func (g *trafficGen) do(ctx context.Context, addr, method, path, idemKey string, body, out any) bool {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+g.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			g.count(func(s *trafficStats) { s.errors++ })
		}
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		g.count(func(s *trafficStats) { s.errors++ })
		return false
	}
	if out != nil {
		return json.Unmarshal(b, out) == nil
	}
	return true
}

// newFileLogger writes the nodes' logs to a file, so the demo's terminal
// shows the summary, not the log stream.
func newFileLogger(level, path string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{path}
	cfg.ErrorOutputPaths = []string{path}
	return cfg.Build()
}
