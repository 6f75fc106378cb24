package txswitch_test

import (
	"context"
	"fmt"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// A node answers 404 or 401 only for what the cluster does not have: a
// miss on its own state (it may be behind, or a deposed leader) is
// confirmed through a read barrier first, and a node that cannot reach a
// quorum answers 503 instead (regression: an isolated old leader answered
// 404 payment_not_found to a capture of a payment the new leader had
// acknowledged).
func TestMissesAreConfirmedBeforeAnswering(t *testing.T) {
	cut := txswitch.ErrNoLeader
	for _, tc := range []struct {
		name    string
		barrier error
		do      func(h *harness) error
		status  int
		code    string
	}{
		{"capture of an unknown payment, quorum reachable", nil, func(h *harness) error {
			_, err := h.svc.Capture(h.ctx, caller("c"), "pay_unknown", txswitch.CaptureRequest{})
			return err
		}, 404, "payment_not_found"},
		{"capture of an unknown payment, cut off", cut, func(h *harness) error {
			_, err := h.svc.Capture(h.ctx, caller("c"), "pay_unknown", txswitch.CaptureRequest{})
			return err
		}, 503, "no_leader"},
		{"payment on an unknown order, cut off", cut, func(h *harness) error {
			_, err := h.svc.CreatePayment(h.ctx, caller("p"), "ord_unknown", txswitch.CreatePaymentRequest{Method: "card"})
			return err
		}, 503, "no_leader"},
		{"review of an unknown payment, quorum reachable", nil, func(h *harness) error {
			_, err := h.svc.ReviewPayment(h.ctx, "pay_unknown", txswitch.ReviewRequest{Decision: txswitch.ReviewReject})
			return err
		}, 404, "payment_not_found"},
		{"review of an unknown payment, cut off", cut, func(h *harness) error {
			_, err := h.svc.ReviewPayment(h.ctx, "pay_unknown", txswitch.ReviewRequest{Decision: txswitch.ReviewReject})
			return err
		}, 503, "no_leader"},
		{"unknown API key, quorum reachable", nil, func(h *harness) error {
			_, err := h.svc.Authenticate(h.ctx, "sk_nobody")
			return err
		}, 401, "unauthorized"},
		{"unknown API key, cut off", cut, func(h *harness) error {
			_, err := h.svc.Authenticate(h.ctx, "sk_nobody")
			return err
		}, 503, "no_leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.log.FailBarrier(tc.barrier)
			wantErr(t, tc.do(h), tc.status, tc.code)
		})
	}
	// A known key and a known payment need no barrier: they are served
	// even when the node is cut off (the write is judged again in apply).
	h := newHarness(t)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
	h.log.FailBarrier(cut)
	if m, err := h.svc.Authenticate(h.ctx, keyA); err != nil || m != merchantA {
		t.Fatalf("known key while cut off: %q %v", m, err)
	}
	if _, err := h.svc.Capture(h.ctx, caller("c2"), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatalf("capture of a known payment: %v", err)
	}
}

// A member that has not applied any routing configuration yet (it just
// joined and is catching up) cannot judge an API key: 503, not 401.
func TestAuthenticateWithoutConfigIsUnavailable(t *testing.T) {
	m, err := txswitch.NewMachine(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	svc := txswitch.NewService(txswitch.ServiceConfig{Log: memory.NewLog(m), Store: memory.NewStore(), Machine: m,
		Providers: memory.NewProviders(), Clock: &fakeClock{}, IDs: &txswitch.SequentialIDs{}})
	_, err = svc.Authenticate(t.Context(), keyA)
	wantErr(t, err, 503, txswitch.CodeNotConfigured)
}

// A read whose barrier times out changed nothing: it is answered 503
// leader_unavailable (ask again), never outcome_unknown, which tells a
// client that a write may have happened. The same holds for a write whose
// barrier (confirming a miss, or PutConfig's check) times out before it
// proposes anything (regression: GET /v1/orders/{id} on a node whose read
// index never came back was answered outcome_unknown after 10 s).
func TestReadBarrierTimeoutIsNotOutcomeUnknown(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(h *harness, orderID, paymentID string) error
	}{
		{"get order", func(h *harness, orderID, _ string) error {
			_, err := h.svc.GetOrder(h.ctx, caller(""), orderID)
			return err
		}},
		{"get payment", func(h *harness, _, paymentID string) error {
			_, err := h.svc.GetPayment(h.ctx, caller(""), paymentID)
			return err
		}},
		{"timeline", func(h *harness, orderID, _ string) error {
			_, err := h.svc.Timeline(h.ctx, caller(""), orderID)
			return err
		}},
		{"get config", func(h *harness, _, _ string) error {
			_, err := h.svc.GetConfig(h.ctx)
			return err
		}},
		{"unknown API key", func(h *harness, _, _ string) error {
			_, err := h.svc.Authenticate(h.ctx, "sk_nobody")
			return err
		}},
		{"capture of an unknown payment", func(h *harness, _, _ string) error {
			_, err := h.svc.Capture(h.ctx, caller("c"), "pay_unknown", txswitch.CaptureRequest{})
			return err
		}},
		{"config change", func(h *harness, _, _ string) error {
			_, err := h.svc.PutConfig(h.ctx, testConfig())
			return err
		}},
	} {
		for _, cause := range []struct {
			name    string
			barrier error
		}{
			{"read index timed out", fmt.Errorf("read barrier: %w", txswitch.ErrTimeout)},
			{"request deadline", fmt.Errorf("read barrier: %w", context.DeadlineExceeded)},
		} {
			t.Run(tc.name+", "+cause.name, func(t *testing.T) {
				h := newHarness(t)
				o := h.createOrder(1000)
				p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
				entries := len(h.log.Entries())
				h.log.FailBarrier(cause.barrier)
				wantErr(t, tc.do(h, o.ID, p.ID), 503, txswitch.CodeLeaderUnavailable)
				if n := len(h.log.Entries()); n != entries {
					t.Fatalf("%d entries proposed after the barrier failed", n-entries)
				}
			})
		}
	}
}
