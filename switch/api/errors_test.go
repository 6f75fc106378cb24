package api

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	txswitch "github.com/txswitch/txswitch/switch"
)

// TestErrorMapping checks how Service errors become responses.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		write      bool
		wantStatus int
		wantCode   string
		wantRetry  bool
		wantLog    bool
	}{
		{"domain 409", txswitch.NewError(409, "invalid_state", "", "already captured"), true, 409, "invalid_state", false, false},
		{"domain 422", txswitch.NewError(422, "idempotency_key_reused", "", "different body"), true, 422, "idempotency_key_reused", false, false},
		{"wrapped domain 404", fmt.Errorf("load: %w", txswitch.NewError(404, "not_found", "", "no such payment")), false, 404, "not_found", false, false},
		{"domain 429", txswitch.NewError(429, "rate_limited", "", "slow down"), true, 429, "rate_limited", true, false},
		{"domain 503", txswitch.NewError(503, "unavailable", "", "disk full"), true, 503, "unavailable", true, false},
		{"domain error without status", txswitch.NewError(0, "oops", "", "no status"), true, 500, "internal", false, true},
		{"timeout", fmt.Errorf("propose: %w", txswitch.ErrTimeout), true, 503, "outcome_unknown", true, false},
		{"timeout on read", fmt.Errorf("read barrier: %w", txswitch.ErrTimeout), false, 503, "leader_unavailable", true, false},
		{"no leader", fmt.Errorf("propose: %w", txswitch.ErrNoLeader), true, 503, "no_leader", true, false},
		{"queue full", txswitch.ErrQueueFull, true, 503, "unavailable", true, false},
		{"stopped", txswitch.ErrStopped, false, 503, "unavailable", true, false},
		{"dropped", txswitch.ErrDropped, true, 503, "unavailable", true, false},
		{"deadline on write", fmt.Errorf("wait: %w", context.DeadlineExceeded), true, 503, "outcome_unknown", true, false},
		{"deadline on read", context.DeadlineExceeded, false, 503, "unavailable", true, false},
		{"anything else", io.ErrUnexpectedEOF, true, 500, "internal", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			n := newTestNode(t, func(o *Options) {
				o.Logger = zap.New(core)
				o.Cluster = &fakeCluster{leader: true, addr: "10.0.0.1:8080"}
			})
			n.svc.err = tt.err
			r := request{"GET", "/v1/payments/pay_1", mh(), ""}
			if tt.write {
				r = request{"POST", "/v1/payments/pay_1/cancel", mh(), ""}
			}
			resp := n.do(t, r)
			code, _ := resp.errCode()
			if resp.status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s", resp.status, resp.body, tt.wantStatus, tt.wantCode)
			}
			if got := resp.headers["Retry-After"] != ""; got != tt.wantRetry {
				t.Errorf("Retry-After present = %v, want %v", got, tt.wantRetry)
			}
			if tt.wantStatus == 503 && resp.headers["X-Txswitch-Leader"] != "10.0.0.1:8080" {
				t.Errorf("503 without leader hint: %v", resp.headers)
			}
			logged := logs.FilterMessage("request failed").Len() > 0
			if logged != tt.wantLog {
				t.Errorf("logged = %v, want %v", logged, tt.wantLog)
			}
			if tt.wantStatus == 500 && !strings.Contains(string(resp.body), resp.headers["X-Request-Id"]) {
				t.Errorf("500 body does not name the request id: %s", resp.body)
			}
		})
	}
}

// invalidReplyService returns replies with a broken status.
type invalidReplyService struct{ *fakeService }

func (s invalidReplyService) GetPayment(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	return txswitch.Reply{Status: 0, Body: []byte(`{}`)}, nil
}

func TestInvalidReplyStatus(t *testing.T) {
	n := newTestNode(t, func(o *Options) { o.Service = invalidReplyService{newFakeService()} })
	resp := n.do(t, request{"GET", "/v1/payments/pay_1", mh(), ""})
	if code, _ := resp.errCode(); resp.status != 500 || code != "internal" {
		t.Fatalf("got %d %s", resp.status, resp.body)
	}
}

// panicService panics in a handler.
type panicService struct{ *fakeService }

func (s panicService) GetPayment(ctx context.Context, c txswitch.Caller, id string) (txswitch.Reply, error) {
	panic("bug")
}

func TestHandlerPanicIs500(t *testing.T) {
	n := newTestNode(t, func(o *Options) { o.Service = panicService{newFakeService()} })
	resp := n.do(t, request{"GET", "/v1/payments/pay_1", mh(), ""})
	if code, _ := resp.errCode(); resp.status != 500 || code != "internal" {
		t.Fatalf("got %d %s", resp.status, resp.body)
	}
	// The server survives.
	if r := n.do(t, request{"GET", "/healthz", nil, ""}); r.status != 200 {
		t.Fatalf("healthz after panic: %d", r.status)
	}
}
