package cluster

import (
	"flag"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

var bigSnapMB = flag.Int("cluster.bigsnap.mb", 0, "TestCatchUpFromALargeStreamedImage: state to build, in MB of image (0: skip the test)")

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestCatchUpFromALargeStreamedImage builds a payment state of
// -cluster.bigsnap.mb MB of image while a follower is down, past the log
// the leader keeps, then restarts the follower: it must catch up from one
// streamed image, larger than the transport's 64 MB frame when asked for
// more, in bounded memory. It reports the image size, the catch-up time
// and the process's peak Go heap during the catch-up. It takes a minute or
// more, so it runs only when asked:
//
//	go test -run TestCatchUpFromALargeStreamedImage -v ./cmd/cluster/ -args -cluster.bigsnap.mb 100
func TestCatchUpFromALargeStreamedImage(t *testing.T) {
	if *bigSnapMB <= 0 {
		t.Skip("set -cluster.bigsnap.mb to run")
	}
	l, leaderAddr, slot := startStreaming(t, LocalConfig{SnapshotEvery: 1000, SnapshotKeep: 100, LagRetain: 100})
	if err := l.StopNode(slot); err != nil {
		t.Fatal(err)
	}
	// One order and payment is about 6.8 KB of state without a central
	// database (the outbox keeps every event).
	want := int64(*bigSnapMB) << 20
	perPayment := int64(6800)
	total := int(want / perPayment)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 48 {
		wg.Go(func() {
			for next.Add(1) <= int64(total) {
				o := e2eCreateOrder(t, l, leaderAddr, e2eOrderReq(1250, "EUR", "NL"))
				if r, _ := e2ePay(t, l, leaderAddr, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 {
					t.Errorf("pay: %d %s", r.Status, r.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d payments in %v", total, time.Since(start).Round(time.Millisecond))
	lead := l.Node(e2eLeaderIndex(t, l))
	im, err := lead.machine.OpenImage()
	if err != nil {
		t.Fatal(err)
	}
	var cw countWriter
	if _, err := im.WriteTo(&cw); err != nil {
		t.Fatal(err)
	}
	_ = im.Close()
	t.Logf("state image: %d MB", cw.n>>20)

	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	caught := time.Now()
	if err := l.RestartNode(slot); err != nil {
		t.Fatal(err)
	}
	n := l.Node(slot)
	waitFor(t, 10*time.Minute, "the restarted follower to catch up", func() bool {
		return n.raft.Status().Applied >= lead.raft.Status().Commit
	})
	close(stop)
	sampler.Wait()
	t.Logf("caught up in %v; Go heap in use %d MB before, peak %d MB during", time.Since(caught).Round(time.Millisecond), before>>20, peak.Load()>>20)
	snap, err := n.db.LogStore(n.cfg.Group).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := snap.GetData(); len(d) == 0 || d[0] != 3 {
		t.Fatalf("the follower caught up without a streamed image (snapshot data %x)", d[:min(len(d), 1)])
	}
	o := e2eCreateOrder(t, l, n.APIAddr(), e2eOrderReq(500, "EUR", "NL"))
	if r, _ := e2ePay(t, l, n.APIAddr(), o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 {
		t.Fatalf("pay through the caught-up node: %d %s", r.Status, r.Body)
	}
}
