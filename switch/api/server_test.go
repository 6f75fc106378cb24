package api

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestServerLimitsFromOptions(t *testing.T) {
	s := New(Options{Service: newFakeService(), Concurrency: 7, ReadTimeout: time.Second, WriteTimeout: 2 * time.Second,
		IdleTimeout: 3 * time.Second, MaxBodyBytes: 100, MaxAdminBodyBytes: 50})
	got := [5]any{s.srv.Concurrency, s.srv.ReadTimeout, s.srv.WriteTimeout, s.srv.IdleTimeout, s.srv.MaxRequestBodySize}
	want := [5]any{7, time.Second, 2 * time.Second, 3 * time.Second, 100}
	if got != want {
		t.Fatalf("server limits %v, want %v", got, want)
	}
	d := New(Options{Service: newFakeService()})
	if d.opts.MaxBodyBytes != 64<<10 || d.srv.MaxRequestBodySize != 1<<20 || d.opts.RequestTimeout <= 0 || d.srv.Concurrency <= 0 {
		t.Fatalf("defaults not applied: %+v", d.opts)
	}
}

// TestBodyLimits: merchant routes take MaxBodyBytes, PUT config the larger
// admin limit, and bodies past both are refused by fasthttp itself, still
// in the API's error format.
func TestBodyLimits(t *testing.T) {
	n := newTestNode(t, func(o *Options) { o.MaxBodyBytes = 1 << 10; o.MaxAdminBodyBytes = 4 << 10 })
	pad := func(size int) string { return `{"reference":"` + strings.Repeat("a", size) + `"}` }
	cfg := `{"merchants":[{"id":"m","name":"` + strings.Repeat("n", 2<<10) + `","api_key_hashes":[]}]}`
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantCode   string
	}{
		{"order under limit", request{"POST", "/v1/orders", mh(), pad(900)}, 201, ""},
		{"order over limit", request{"POST", "/v1/orders", mh(), pad(2 << 10)}, 413, "body_too_large"},
		{"config over merchant limit, under admin limit", request{"PUT", "/v1/admin/config", adminHeaders(), cfg}, 200, ""},
		{"over every limit", request{"POST", "/v1/orders", mh(), pad(8 << 10)}, 413, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := n.do(t, tt.req)
			if code, _ := resp.errCode(); resp.status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s", resp.status, resp.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestListenAndShutdown(t *testing.T) {
	s := New(Options{Service: newFakeService()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	status, body, err := fasthttp.Get(nil, "http://"+ln.Addr().String()+"/healthz")
	if err != nil || status != 200 || string(body) != `{"status":"ok"}` {
		t.Fatalf("healthz over TCP: %d %s %v", status, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if _, _, err := fasthttp.Get(nil, "http://"+ln.Addr().String()+"/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
	if err := s.ListenAndServe("256.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "api: serve") {
		t.Fatalf("ListenAndServe on a bad address: %v", err)
	}
}
