package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// TestRollingUpgradeMovesTheClusterVersion restarts the members of a
// cluster one by one on a binary that runs one more cluster version than
// this one, with payments between the restarts: the gate stays where it
// is while any member runs the old binary and moves on every member once
// the last one is upgraded. A member restarted on the old binary
// afterwards refuses to start instead of applying formats it cannot read.
func TestRollingUpgradeMovesTheClusterVersion(t *testing.T) {
	oldBin := txswitch.BinaryVersions
	newBin := txswitch.VersionRange{Min: oldBin.Min, Max: oldBin.Max + 1}
	l := startE2E(t)
	versionsOn := func(n *Node) txswitch.VersionStatus {
		vs, err := n.Service().Versions()
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	// A new cluster moves to its binary's newest version by itself.
	waitFor(t, 20*time.Second, "a new cluster at this binary's version", func() bool {
		for _, n := range l.Nodes() {
			if versionsOn(n).Cluster != oldBin.Max {
				return false
			}
		}
		return true
	})
	// send retries, with its idempotency key, the answers API.md allows
	// while a restarted member's cluster settles (a 503 with Retry-After:
	// no leader while a loaded machine elects again, an outcome not known
	// yet; the 409 of an attempt still in flight); anything else is final.
	send := func(path string, body any) e2eResp {
		t.Helper()
		key, b := e2eNewKey("upg"), e2eMustJSON(t, body)
		addrs := l.APIAddrs()
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; ; i++ {
			r, err := e2eSend(addrs[i%len(addrs)], e2eRawReq{Method: "POST", Path: path, Headers: e2eMerchantHeaders(l.APIKey, key), Body: b})
			retry := err != nil || r.Status == 503 && r.Header.Get("Retry-After") != "" || r.Status == 409 && r.errCode() == "idempotency_request_in_progress"
			if !retry || time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("POST %s: %v", path, err)
				}
				return r
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pay := func() {
		t.Helper()
		r := send("/v1/orders", e2eOrderReq(2500, "EUR", "NL"))
		var o txswitch.Order
		if r.Status != 201 {
			t.Fatalf("create order during the upgrade: %d %s", r.Status, r.Body)
		}
		r.decode(t, &o)
		r = send("/v1/orders/"+o.ID+"/payments", txswitch.CreatePaymentRequest{Method: "card"})
		var p txswitch.Payment
		if r.Status == 201 {
			r.decode(t, &p)
		}
		if r.Status != 201 || p.Status != txswitch.PaymentCaptured {
			t.Fatalf("payment during the upgrade: %d %s", r.Status, r.Body)
		}
	}
	for i := 0; i < l.Size(); i++ {
		if _, err := l.ShutdownNode(i); err != nil {
			t.Fatal(err)
		}
		l.SetNodeVersions(i, newBin)
		if err := l.RestartNode(i); err != nil {
			t.Fatalf("restart node %d on the new binary: %v", i+1, err)
		}
		if err := l.WaitReady(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		pay()
		id := l.Node(i).ID()
		waitFor(t, 20*time.Second, "the upgraded member's report", func() bool {
			ld := l.Leader()
			return ld != nil && versionsOn(ld).Members[id] == newBin
		})
		if i < l.Size()-1 {
			// The upgraded member leads (it could move the gate), and past
			// a few of its checks the gate still waits for the rest.
			lead := l.Node(e2eLeaderIndex(t, l))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := lead.Raft().TransferLeadership(ctx, id)
			cancel()
			if err != nil {
				t.Fatalf("hand leadership to the upgraded node %d: %v", id, err)
			}
			time.Sleep(2 * VersionCheckEvery)
			for _, n := range l.Nodes() {
				if v := versionsOn(n).Cluster; v != oldBin.Max {
					t.Fatalf("after %d of %d upgrades node %d is at cluster version %d", i+1, l.Size(), n.ID(), v)
				}
			}
		}
	}
	waitFor(t, 20*time.Second, "the new version on every member", func() bool {
		for _, n := range l.Nodes() {
			if versionsOn(n).Cluster != newBin.Max {
				return false
			}
		}
		return len(l.Nodes()) == l.Size()
	})
	pay()

	// A downgrade past the gate is refused at start.
	if _, err := l.ShutdownNode(0); err != nil {
		t.Fatal(err)
	}
	l.SetNodeVersions(0, oldBin)
	err := l.RestartNode(0)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("cluster version %d", newBin.Max)) {
		t.Fatalf("an old binary started on a version-2 state: %v", err)
	}
}
