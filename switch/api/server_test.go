package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
)

func TestServerLimitsFromOptions(t *testing.T) {
	s := New(Options{Service: newFakeService(), Concurrency: 7, ReadTimeout: time.Second, WriteTimeout: 2 * time.Second,
		IdleTimeout: 3 * time.Second, MaxBodyBytes: 100, MaxAdminBodyBytes: 50})
	got := [5]any{s.opts.Concurrency, s.srv.ReadTimeout, s.srv.WriteTimeout, s.srv.IdleTimeout, s.srv.MaxRequestBodySize}
	want := [5]any{7, time.Second, 2 * time.Second, 3 * time.Second, 100}
	if got != want {
		t.Fatalf("server limits %v, want %v", got, want)
	}
	d := New(Options{Service: newFakeService()})
	if d.opts.MaxBodyBytes != 64<<10 || d.srv.MaxRequestBodySize != 1<<20 || d.opts.RequestTimeout <= 0 || d.srv.Concurrency <= d.opts.Concurrency {
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

// TestConnectionsPastTheLimitGetTheContract503: a connection past
// Options.Concurrency is answered in the API's error format with
// Retry-After (fasthttp's own answer is plain text without it), and a
// slot freed by a close is served again.
func TestConnectionsPastTheLimitGetTheContract503(t *testing.T) {
	s := New(Options{Service: newFakeService(), Concurrency: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	// get sends one keep-alive request on c and reads the response.
	get := func(c net.Conn, br *bufio.Reader) (*http.Response, string) {
		t.Helper()
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		return resp, string(body)
	}
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { _ = c.Close() })
		return c, bufio.NewReader(c)
	}

	// Two connections within the limit, kept open.
	held := make([]net.Conn, 2)
	for i := range held {
		c, br := dial()
		if resp, body := get(c, br); resp.StatusCode != 200 {
			t.Fatalf("connection %d within the limit: %d %s", i, resp.StatusCode, body)
		}
		held[i] = c
	}

	c, br := dial()
	resp, body := get(c, br)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("503 body is not the API's error format: %q (%v)", body, err)
	}
	if resp.StatusCode != 503 || e.Error.Code != "overloaded" || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
		t.Fatalf("past the limit: %d %v %q, want 503 overloaded, Retry-After 1, JSON, Connection: close", resp.StatusCode, resp.Header, body)
	}
	if n := testutil.ToFloat64(s.metrics.connsRejected); n != 1 {
		t.Errorf("connections rejected metric = %v, want 1", n)
	}

	// Closing a held connection frees its slot (once the server saw the
	// close): a new connection is served again.
	_ = held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, br := dial()
		resp, body := get(c, br)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed after a close: %d %s", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
