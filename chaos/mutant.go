package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Mutants break the evidence on purpose, from outside the switch, so a
// scenario can prove its checkers catch the breakage. They are never part
// of a scenario that is expected to pass.

// DoubleBook authorizes (with capture) an already charged payment a second
// time straight at the PSP, under a new idempotency key: the ledger then
// shows two charges for one payment, as a switch that retried a timeout
// with a fresh key would cause.
type DoubleBook struct {
	record
	sim *sim.Server
}

// NewDoubleBook returns a double-booking mutant on the named PSP.
func NewDoubleBook(name string, s *sim.Server) *DoubleBook {
	return &DoubleBook{record: record{kind: "mutant_double_book", target: name}, sim: s}
}

// Inject charges the last approved authorization's payment again.
func (m *DoubleBook) Inject(ctx context.Context) error {
	e, ok := lastApproved(m.sim, txswitch.OpAuthorize)
	var err error
	var res txswitch.ProviderResult
	if !ok {
		err = errors.New("no approved authorization in the ledger yet")
	} else {
		res, err = postSim(ctx, m.sim, txswitch.ProviderRequest{IdempotencyKey: "mutant-double-" + e.PaymentID, Op: txswitch.OpAuthorize,
			PaymentID: e.PaymentID, OrderID: "ord_mutant", MerchantID: "mer_mutant", Method: e.Method, Amount: e.Amount, Capture: true})
	}
	m.add("inject", false, e.PaymentID, err)
	m.add("effect", err == nil && res.Outcome == txswitch.OutcomeApproved, fmt.Sprintf("second charge of %s: %s", e.PaymentID, res.Outcome), nil)
	return err
}

// Undo does nothing: money moved cannot be unmoved.
func (m *DoubleBook) Undo(context.Context) error { return nil }

// GhostRefund refunds one minor unit of a captured payment straight at
// the PSP: the ledger's refunded total then differs from the switch's.
type GhostRefund struct {
	record
	sim *sim.Server
}

// NewGhostRefund returns a ghost-refund mutant on the named PSP.
func NewGhostRefund(name string, s *sim.Server) *GhostRefund {
	return &GhostRefund{record: record{kind: "mutant_ghost_refund", target: name}, sim: s}
}

// Inject refunds 1 minor unit of the last captured authorization.
func (m *GhostRefund) Inject(ctx context.Context) error {
	var (
		e   sim.LedgerEntry
		ok  bool
		err error
		res txswitch.ProviderResult
	)
	for _, x := range m.sim.Ledger() {
		if x.Op == txswitch.OpAuthorize && x.Status == txswitch.OutcomeApproved && x.Captured {
			e, ok = x, true
		}
	}
	if !ok {
		err = errors.New("no captured authorization in the ledger yet")
	} else {
		res, err = postSim(ctx, m.sim, txswitch.ProviderRequest{IdempotencyKey: "mutant-refund-" + e.PaymentID, Op: txswitch.OpRefund,
			PaymentID: e.PaymentID, OrderID: "ord_mutant", MerchantID: "mer_mutant", Method: e.Method,
			Amount: txswitch.Money{Value: 1, Currency: e.Amount.Currency}, ProviderRef: e.ProviderRef})
	}
	m.add("inject", false, e.PaymentID, err)
	m.add("effect", err == nil && res.Outcome == txswitch.OutcomeApproved, fmt.Sprintf("ghost refund of %s: %s", e.PaymentID, res.Outcome), nil)
	return err
}

// Undo does nothing.
func (m *GhostRefund) Undo(context.Context) error { return nil }

// WipeAll stops every node, deletes every data dir and restarts them: the
// slots bootstrap a brand-new cluster, so every acknowledged write is
// lost — the total data loss the lost-write checker must catch.
type WipeAll struct {
	record
	c *Cluster
}

// NewWipeAll returns the total-data-loss mutant.
func NewWipeAll(c *Cluster) *WipeAll {
	return &WipeAll{record: record{kind: "mutant_wipe_all", target: "all"}, c: c}
}

// Inject wipes and restarts every slot.
func (m *WipeAll) Inject(context.Context) error {
	start := time.Now()
	var errs []error
	for i := 0; i < m.c.Local.Size(); i++ {
		errs = append(errs, m.c.Local.StopNode(i), os.RemoveAll(slotDir(m.c, i)))
	}
	for i := 0; i < m.c.Local.Size(); i++ {
		errs = append(errs, m.c.Local.RestartNode(i))
	}
	err := errors.Join(errs...)
	m.addAt(start, "inject", false, "", err)
	return err
}

// Undo does nothing.
func (m *WipeAll) Undo(context.Context) error { return nil }

func lastApproved(s *sim.Server, op txswitch.ProviderOp) (sim.LedgerEntry, bool) {
	var out sim.LedgerEntry
	ok := false
	for _, e := range s.Ledger() {
		if e.Op == op && e.Status == txswitch.OutcomeApproved {
			out, ok = e, true
		}
	}
	return out, ok
}

// postSim sends one request straight to a simulated PSP's wire API.
func postSim(ctx context.Context, s *sim.Server, req txswitch.ProviderRequest) (txswitch.ProviderResult, error) {
	var res txswitch.ProviderResult
	body, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+wire.PaymentsPrefix+string(req.Op), bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(wire.HeaderIdempotencyKey, req.IdempotencyKey)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return res, fmt.Errorf("%s at the PSP: %w", req.Op, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("%s at the PSP: %d %s", req.Op, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("%s at the PSP: decode %s: %w", req.Op, b, err)
	}
	return res, nil
}
