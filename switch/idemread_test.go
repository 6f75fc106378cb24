package txswitch_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// idemReads counts the service's store reads of idempotency records.
type idemReads struct {
	txswitch.Reader
	n atomic.Int64
}

func (r *idemReads) Get(key []byte) ([]byte, error) {
	if bytes.HasPrefix(key, []byte("i/")) {
		r.n.Add(1)
	}
	return r.Reader.Get(key)
}

// TestNewIdempotencyKeyIsNotRead: a request with a key the store has never
// held is answered without reading the store for it (the key filter knows
// it is absent: a miss was the dearest read a payment made); a retry
// with the same key reads the record and gets the stored reply; and a
// machine whose filter has not caught up with the store yet reads every
// key, so a retry after a restart still finds its record.
func TestNewIdempotencyKeyIsNotRead(t *testing.T) {
	store := memory.NewStore()
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	start := func(reads *idemReads) *txswitch.Svc {
		m, err := txswitch.NewMachine(store)
		if err != nil {
			t.Fatal(err)
		}
		log := memory.NewLog(m)
		provs := memory.NewProviders(memory.NewProvider("psp_a"), memory.NewProvider("psp_b"))
		m.OnConfig(func(cfg txswitch.RoutingConfig) { _ = provs.Configure(cfg.Providers) })
		reads.Reader = store
		return txswitch.NewService(txswitch.ServiceConfig{Log: log, Store: reads, Machine: m, Providers: provs, Clock: clock, IDs: &txswitch.SequentialIDs{}})
	}
	reads := &idemReads{}
	svc := start(reads)
	if err := svc.EnsureConfig(ctx, testConfig()); err != nil {
		t.Fatal(err)
	}
	first := map[string]txswitch.Reply{}
	for i := range 20 {
		k := fmt.Sprintf("order-%d", i)
		r, err := svc.CreateOrder(ctx, caller(k), orderReq(1000))
		if err != nil {
			t.Fatal(err)
		}
		first[k] = r
	}
	if got := reads.n.Load(); got != 0 {
		t.Fatalf("%d store reads of idempotency records for 20 new keys; want 0", got)
	}
	r, err := svc.CreateOrder(ctx, caller("order-3"), orderReq(1000))
	if err != nil {
		t.Fatal(err)
	}
	if got := reads.n.Load(); got != 1 {
		t.Fatalf("%d store reads for a retry; want 1", got)
	}
	if r.Status != first["order-3"].Status || !bytes.Equal(r.Body, first["order-3"].Body) {
		t.Fatalf("retry answered %d %s; first %d %s", r.Status, r.Body, first["order-3"].Status, first["order-3"].Body)
	}

	// A restarted machine over the same store, its filter scan at one key
	// per Apply: until the scan is through, every key is read.
	defer txswitch.SetFilterScanChunk(1)()
	reads2 := &idemReads{}
	svc2 := start(reads2)
	r, err = svc2.CreateOrder(ctx, caller("order-7"), orderReq(1000))
	if err != nil {
		t.Fatal(err)
	}
	if reads2.n.Load() != 1 || r.Status != first["order-7"].Status || !bytes.Equal(r.Body, first["order-7"].Body) {
		t.Fatalf("after a restart: %d reads, answered %d %s; first %d %s", reads2.n.Load(), r.Status, r.Body, first["order-7"].Status, first["order-7"].Body)
	}
}
