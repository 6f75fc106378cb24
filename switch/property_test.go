package txswitch_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// scriptedProvider remembers every step pushed, so call i can be paired
// with the step it got.
type scripted struct {
	steps map[string][]memory.Step // provider/op → steps in push order
}

func (s *scripted) push(h *harness, provider string, op txswitch.ProviderOp, st memory.Step) {
	p := h.a
	if provider == "psp_b" {
		p = h.b
	}
	p.Push(op, st)
	k := provider + "/" + string(op)
	s.steps[k] = append(s.steps[k], st)
}

func randomStep(r *rand.Rand, provider string) memory.Step {
	switch r.IntN(8) {
	case 0:
		return declined("do_not_honor")
	case 1:
		return memoryErr(refusedErr(provider))
	case 2:
		return memoryErr(timeoutErr(provider))
	default:
		return approved(fmt.Sprintf("%s-%d", provider, r.IntN(1e6)))
	}
}

// TestRandomOperationsKeepInvariants drives random operations with random
// provider behaviour and checks DESIGN.md's invariants from the outside
// after every step: money adds up, no money-moving request is sent twice,
// failover happens only after a definitive failure, and a replay of the
// log reproduces the state byte for byte.
func TestRandomOperationsKeepInvariants(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			h := newHarness(t)
			sc := &scripted{steps: map[string][]memory.Step{}}
			var orders []string
			var payments []string
			for step := range 150 {
				switch op := r.IntN(10); {
				case op < 2 || len(orders) == 0:
					orders = append(orders, h.createOrder(int64(100+r.IntN(5000))).ID)
				case op < 5:
					o := orders[r.IntN(len(orders))]
					sc.push(h, "psp_a", txswitch.OpAuthorize, randomStep(r, "psp_a"))
					sc.push(h, "psp_b", txswitch.OpAuthorize, randomStep(r, "psp_b"))
					req := txswitch.CreatePaymentRequest{Method: "card", Capture: []string{"automatic", "manual"}[r.IntN(2)]}
					if r.IntN(3) == 0 {
						req.Amount = eur(int64(1 + r.IntN(3000)))
					}
					res, err := h.svc.CreatePayment(h.ctx, caller(""), o, req)
					if err == nil {
						payments = append(payments, decode[txswitch.Payment](t, res).ID)
					} else if e := (*txswitch.Error)(nil); !errors.As(err, &e) || e.Status >= 500 {
						t.Fatalf("step %d: pay: %v", step, err)
					}
				case op < 8 && len(payments) > 0:
					p := payments[r.IntN(len(payments))]
					prov := h.payment(p).Provider
					var err error
					amount := eur(int64(1 + r.IntN(3000)))
					if r.IntN(2) == 0 {
						amount = nil
					}
					switch r.IntN(3) {
					case 0:
						sc.push(h, prov, txswitch.OpCapture, randomStep(r, prov))
						_, err = h.svc.Capture(h.ctx, caller(""), p, txswitch.CaptureRequest{Amount: amount})
					case 1:
						sc.push(h, prov, txswitch.OpRefund, randomStep(r, prov))
						_, err = h.svc.Refund(h.ctx, caller(""), p, txswitch.RefundRequest{Amount: amount})
					default:
						sc.push(h, prov, txswitch.OpCancel, randomStep(r, prov))
						_, err = h.svc.Cancel(h.ctx, caller(""), p)
					}
					if e := (*txswitch.Error)(nil); err != nil && (!errors.As(err, &e) || e.Status >= 500) {
						t.Fatalf("step %d: op: %v", step, err)
					}
				default:
					h.clock.Advance(time.Minute)
					for _, prov := range []string{"psp_a", "psp_b"} {
						for range 3 {
							st := randomStep(r, prov)
							if st.Err != nil {
								st = memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}}
							}
							sc.push(h, prov, txswitch.OpStatus, st)
						}
					}
					if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
						t.Fatalf("step %d: resolve: %v", step, err)
					}
				}
				if step%5 == 4 {
					checkMoney(t, h, orders)
				}
			}
			checkMoney(t, h, orders)
			if len(payments) < 10 {
				t.Fatalf("only %d payments: the run exercised too little", len(payments))
			}
			checkCalls(t, h, sc)
			// Replay determinism over the whole random history.
			s2 := memory.NewStore()
			m2, _ := txswitch.NewMachine(s2)
			if _, err := m2.Apply(h.log.Entries()); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s2.Dump(), h.store.Dump()) {
				t.Fatal("replay differs")
			}
		})
	}
}

func checkMoney(t *testing.T, h *harness, orders []string) {
	t.Helper()
	for _, id := range orders {
		o := h.order(id)
		var auth, capt, refd, surch int64
		for _, p := range o.Payments {
			if p.Captured.Value > p.Authorized.Value && p.Status != txswitch.PaymentCancelled {
				t.Fatalf("payment %s captured %d > authorized %d", p.ID, p.Captured.Value, p.Authorized.Value)
			}
			if p.Refunded.Value > p.Captured.Value {
				t.Fatalf("payment %s refunded %d > captured %d", p.ID, p.Refunded.Value, p.Captured.Value)
			}
			var capSum, refSum int64
			for _, c := range p.Captures {
				if c.Status == "succeeded" {
					capSum += c.Amount.Value
				}
			}
			for _, rf := range p.Refunds {
				if rf.Status == "succeeded" {
					refSum += rf.Amount.Value
				}
			}
			if p.CaptureMode == "manual" && capSum != p.Captured.Value || refSum != p.Refunded.Value {
				t.Fatalf("payment %s: captures %d/%d refunds %d/%d", p.ID, capSum, p.Captured.Value, refSum, p.Refunded.Value)
			}
			for _, m := range []txswitch.Money{p.Amount, p.Authorized, p.Captured, p.Refunded} {
				if m.Currency != o.Amount.Currency || m.Value < 0 {
					t.Fatalf("payment %s: bad money %+v", p.ID, m)
				}
			}
			auth += p.Authorized.Value
			capt += p.Captured.Value
			refd += p.Refunded.Value
			if p.Surcharge != nil {
				surch += p.Surcharge.Value
			}
		}
		if auth > o.Amount.Value+surch {
			t.Fatalf("order %s: authorized %d > amount %d + surcharges %d", id, auth, o.Amount.Value, surch)
		}
		if o.Authorized.Value != auth || o.Captured.Value != capt || o.Refunded.Value != refd {
			t.Fatalf("order %s totals %d/%d/%d, payments say %d/%d/%d", id, o.Authorized.Value, o.Captured.Value, o.Refunded.Value, auth, capt, refd)
		}
	}
}

var attemptKeyRE = regexp.MustCompile(`^(pay_[^/]+)/(\d+)$`)

// checkCalls verifies no money-moving key was sent twice and that attempt
// n+1 of a payment exists only after attempt n failed definitively.
func checkCalls(t *testing.T, h *harness, sc *scripted) {
	t.Helper()
	seen := map[string]bool{}
	definitive := map[string]bool{} // key → its call failed definitively
	for _, prov := range []*memory.Provider{h.a, h.b} {
		for _, op := range []txswitch.ProviderOp{txswitch.OpAuthorize, txswitch.OpCapture, txswitch.OpRefund, txswitch.OpCancel} {
			steps := sc.steps[prov.Name()+"/"+string(op)]
			for i, c := range prov.CallsFor(op) {
				if seen[c.IdempotencyKey] {
					t.Fatalf("key %s sent twice", c.IdempotencyKey)
				}
				seen[c.IdempotencyKey] = true
				var pe *txswitch.ProviderError
				if i < len(steps) && errors.As(steps[i].Err, &pe) && pe.Definitive {
					definitive[c.IdempotencyKey] = true
				}
			}
		}
	}
	for key := range seen {
		m := attemptKeyRE.FindStringSubmatch(key)
		if m == nil {
			continue // captures, refunds, cancels: checked for uniqueness above
		}
		if n, _ := strconv.Atoi(m[2]); n > 1 {
			if prev := fmt.Sprintf("%s/%d", m[1], n-1); !definitive[prev] {
				t.Fatalf("attempt %s without a definitive failure of %s", key, prev)
			}
		}
	}
}
