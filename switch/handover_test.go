package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// A provider call that straddles a leader hand-over (a rolling release
// transfers leadership while requests are in flight) is answered with its
// real outcome: the old leader records the result through the new one,
// even when raft drops the first proposal during the transfer, instead of
// leaving the payment in doubt for the resolver.
func TestResultOfACallStraddlingAHandOverIsRecorded(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run starts the call under test; the provider blocks its first
		// step of op until the test releases it.
		op   txswitch.ProviderOp
		step func(block <-chan struct{}) memory.Step
		run  func(h *harness, orderID string) (txswitch.Reply, error)
		// check inspects the outcome.
		check func(t *testing.T, h *harness, orderID string, r txswitch.Reply, err error)
	}{
		{
			name: "payment approved",
			op:   txswitch.OpAuthorize,
			step: func(b <-chan struct{}) memory.Step { s := approved("ref-1"); s.Block = b; return s },
			run: func(h *harness, orderID string) (txswitch.Reply, error) {
				return h.svc.CreatePayment(h.ctx, caller("pay"), orderID, txswitch.CreatePaymentRequest{Method: "card"})
			},
			check: func(t *testing.T, h *harness, orderID string, r txswitch.Reply, err error) {
				if err != nil || r.Status != 201 {
					t.Fatalf("reply = %d %s, %v", r.Status, r.Body, err)
				}
				if p := decode[txswitch.Payment](t, r); p.Status != txswitch.PaymentCaptured {
					t.Fatalf("payment = %s", p.Status)
				}
				if st := h.order(orderID).Status; st != txswitch.OrderPaid {
					t.Fatalf("order = %s", st)
				}
			},
		},
		{
			name: "capture",
			op:   txswitch.OpCapture,
			step: func(b <-chan struct{}) memory.Step { s := approved("cap-1"); s.Block = b; return s },
			run: func(h *harness, orderID string) (txswitch.Reply, error) {
				p := h.pay(orderID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
				return h.svc.Capture(h.ctx, caller("cap"), p.ID, txswitch.CaptureRequest{})
			},
			check: func(t *testing.T, h *harness, orderID string, r txswitch.Reply, err error) {
				if err != nil || r.Status != 201 {
					t.Fatalf("reply = %d %s, %v", r.Status, r.Body, err)
				}
				if st := h.order(orderID).Status; st != txswitch.OrderPaid {
					t.Fatalf("order = %s", st)
				}
			},
		},
		{
			// A definitive failure with another candidate left: the result
			// is recorded through the new leader with the failover's
			// intent, and the former leader makes that committed call (see
			// runPayment; nobody else would send it).
			name: "failover completed by the former leader",
			op:   txswitch.OpAuthorize,
			step: func(b <-chan struct{}) memory.Step { return memory.Step{Err: refusedErr("psp_a"), Block: b} },
			run: func(h *harness, orderID string) (txswitch.Reply, error) {
				return h.svc.CreatePayment(h.ctx, caller("pay"), orderID, txswitch.CreatePaymentRequest{Method: "card"})
			},
			check: func(t *testing.T, h *harness, orderID string, r txswitch.Reply, err error) {
				if err != nil || r.Status != 201 {
					t.Fatalf("reply = %d %s, %v", r.Status, r.Body, err)
				}
				if p := decode[txswitch.Payment](t, r); p.Status != txswitch.PaymentCaptured || p.Provider != "psp_b" {
					t.Fatalf("payment = %s at %s", p.Status, p.Provider)
				}
				if n := len(h.b.CallsFor(txswitch.OpAuthorize)); n != 1 {
					t.Fatalf("%d calls to psp_b, want the one failover", n)
				}
				if !hasEvent(h.timeline(orderID), "failover") {
					t.Fatalf("the refused attempt was not recorded: %v", eventTypes(h.timeline(orderID)))
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			block := make(chan struct{})
			h.a.Push(tc.op, tc.step(block))
			type out struct {
				r   txswitch.Reply
				err error
			}
			done := make(chan out, 1)
			go func() {
				r, err := tc.run(h, o.ID)
				done <- out{r, err}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for len(h.a.CallsFor(tc.op)) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the provider call never started")
				}
				time.Sleep(time.Millisecond)
			}
			// Leadership moves while the call is out, and raft drops the
			// first result proposal (it does during a transfer).
			h.log.SetLeadership(txswitch.Leadership{IsLeader: false, LeaderID: 2, Term: 2})
			h.log.Fail(func(d []byte) bool {
				return strings.Contains(string(d), `"type":"payment_result"`) || strings.Contains(string(d), `"type":"op_result"`)
			}, txswitch.ErrDropped, false)
			close(block)
			res := <-done
			tc.check(t, h, o.ID, res.r, res.err)
			if n := len(h.a.CallsFor(tc.op)); n != 1 {
				t.Fatalf("%s calls = %d", tc.op, n)
			}
		})
	}
}
