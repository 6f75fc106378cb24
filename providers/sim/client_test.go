package sim

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/txswitch/txswitch/providers/wire"
)

func TestControlClient(t *testing.T) {
	s := startSim(t, Config{})
	c := &Client{BaseURL: s.URL()}
	ctx := context.Background()

	want := Behaviour{Methods: map[string]MethodBehaviour{"card": {ErrorRate: 0.25}}}
	if err := c.SetBehaviour(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Behaviour(ctx)
	if err != nil || got.Methods["card"].ErrorRate != 0.25 {
		t.Fatalf("Behaviour = %+v %v", got, err)
	}
	err = c.SetBehaviour(ctx, Behaviour{Methods: map[string]MethodBehaviour{"card": {ErrorRate: 3}}})
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("invalid behaviour accepted: %v", err)
	}
	if err := c.ResetBehaviour(ctx); err != nil {
		t.Fatal(err)
	}

	decodeResult(t, do(t, http.MethodPost, s.URL()+wire.PaymentsPrefix+"authorize", "k1", authReq("k1", "p1", 100)))
	decodeResult(t, do(t, http.MethodPost, s.URL()+wire.PaymentsPrefix+"authorize", "k2", authReq("k2", "p 2", 200)))
	entries, err := c.Ledger(ctx, "p 2")
	if err != nil || len(entries) != 1 || entries[0].IdempotencyKey != "k2" {
		t.Fatalf("Ledger = %+v %v", entries, err)
	}
	if all, err := c.Ledger(ctx, ""); err != nil || len(all) != 2 {
		t.Fatalf("full ledger = %+v %v", all, err)
	}
	if tot, err := c.Totals(ctx, "p1"); err != nil || tot != (Totals{Charges: 1, Authorized: 100}) {
		t.Fatalf("Totals = %+v %v", tot, err)
	}
	if st, err := c.Stats(ctx); err != nil || st.Processed != 2 {
		t.Fatalf("Stats = %+v %v", st, err)
	}
}
