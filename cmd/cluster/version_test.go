package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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

// TestABinaryTooOldForTheClusterCannotJoin: a node joining (--join) on a
// binary that cannot run the cluster's version is refused before it
// becomes a member, with the reason. It was added as a voter, applied the
// log up to the gate's move and stopped ("upgrade this node"): a fourth
// voter that never answers, so that one more failure stopped the writes
// (seen with the release before this one joining a cluster at 12).
func TestABinaryTooOldForTheClusterCannotJoin(t *testing.T) {
	l := startE2E(t)
	bin := txswitch.BinaryVersions
	waitFor(t, 20*time.Second, "a new cluster at this binary's version", func() bool {
		ld := l.Leader()
		return ld != nil && ld.machine.ClusterVersion() == bin.Max
	})
	leader := l.Leader()
	raftAddr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	apiAddr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	joiner := l.configs[0]
	joiner.ID, joiner.Bootstrap, joiner.Join = 0, nil, leader.APIAddr()
	joiner.DataDir = filepath.Join(l.Dir(), "old-binary")
	joiner.RaftListen, joiner.APIListen, joiner.RaftAdvertise, joiner.APIAdvertise = raftAddr, apiAddr, "", ""
	joiner.Versions = txswitch.VersionRange{Min: bin.Min, Max: bin.Max - 1}
	start := time.Now()
	n, err := Start(joiner)
	if err == nil {
		defer n.Stop()
	}
	want := fmt.Sprintf("the cluster runs version %d and the joining node's binary runs versions %d..%d", bin.Max, bin.Min, bin.Max-1)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), txswitch.CodeVersionNotSupported) {
		t.Fatalf("a binary running up to version %d joined a cluster at %d: %v", bin.Max-1, bin.Max, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the refusal took %s: the joiner retried an answer that cannot change", d)
	}
	time.Sleep(500 * time.Millisecond)
	if ms := leader.Raft().Members(); len(ms) != l.Size() {
		t.Fatalf("members after the refused join: %+v", ms)
	}
	// Through a follower too, and from a binary that says nothing (one
	// of version 12 or older) only once the cluster is past 12.
	r := e2eAdmin(t, l, e2eFollowerAddr(t, l), "POST", "/v1/admin/members", map[string]any{
		"raft_addr": raftAddr, "api_addr": apiAddr, "versions": joiner.Versions})
	if r.Status != 409 || r.errCode() != txswitch.CodeVersionNotSupported {
		t.Fatalf("add of an old binary through a follower: %d %s", r.Status, r.Body)
	}
	if err := joinerRunsVersion(versionsUnsaidMax+1, nil); err == nil {
		t.Fatalf("a joiner that does not say its versions was let into a cluster at %d", versionsUnsaidMax+1)
	}
	if err := joinerRunsVersion(versionsUnsaidMax, nil); err != nil {
		t.Fatalf("a joiner of version %d or older that says nothing: %v", versionsUnsaidMax, err)
	}

	// The cluster's own binary joins.
	joiner.Versions = bin
	joiner.DataDir = filepath.Join(l.Dir(), "same-binary")
	n, err = Start(joiner)
	if err != nil {
		t.Fatalf("join on the cluster's binary: %v", err)
	}
	defer n.Stop()
	waitFor(t, 10*time.Second, "the new member in the leader's membership", func() bool {
		return hasMember(leader.Raft().Members(), n.ID())
	})
}

// TestJoinThroughAMemberOfTheReleaseBefore: a member of an older release
// refuses the join's versions as an unknown field; the joiner asks again
// without them instead of failing to join during a rolling upgrade.
func TestJoinThroughAMemberOfTheReleaseBefore(t *testing.T) {
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if strings.Contains(string(b), `"versions"`) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":"unknown_field","message":"unknown field versions","field":"versions"}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":7}`)
	}))
	defer srv.Close()
	id, err := joinCluster(strings.TrimPrefix(srv.URL, "http://"), "tok", "127.0.0.1:1", "127.0.0.1:2", txswitch.BinaryVersions)
	if err != nil || id != 7 {
		t.Fatalf("join through an older member: id %d, %v (asked %q)", id, err, bodies)
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], fmt.Sprintf(`"versions":{"min":%d,"max":%d}`, txswitch.BinaryMinVersion, txswitch.BinaryMaxVersion)) {
		t.Fatalf("asked %q", bodies)
	}
}

// TestAReleaseStoppedHalfWayGoesBack: while a member still runs the
// previous binary the cluster version does not move, so a member already
// upgraded, even leading, can be put back on the previous binary: it
// starts, its report says the previous range again, payments go on, and
// the gate stays where it was (docs/operations.md, "A release").
func TestAReleaseStoppedHalfWayGoesBack(t *testing.T) {
	oldBin := txswitch.BinaryVersions
	newBin := txswitch.VersionRange{Min: oldBin.Min, Max: oldBin.Max + 1}
	l := startE2E(t)
	reportOf := func(id uint64) txswitch.VersionRange {
		ld := l.Leader()
		if ld == nil {
			return txswitch.VersionRange{}
		}
		vs, err := ld.Service().Versions()
		if err != nil {
			t.Fatal(err)
		}
		return vs.Members[id]
	}
	waitFor(t, 20*time.Second, "a new cluster at this binary's version", func() bool {
		ld := l.Leader()
		return ld != nil && ld.machine.ClusterVersion() == oldBin.Max
	})
	pay := func(when string) {
		t.Helper()
		if err := l.WaitReady(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		addr := e2eAnyAddr(t, l, true)
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(2500, "EUR", "NL"))
		if r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 || p.Status != txswitch.PaymentCaptured {
			t.Fatalf("payment %s: %d %s", when, r.Status, r.Body)
		}
	}

	const i = 0
	id := l.Node(i).ID()
	if _, err := l.ShutdownNode(i); err != nil {
		t.Fatal(err)
	}
	l.SetNodeVersions(i, newBin)
	if err := l.RestartNode(i); err != nil {
		t.Fatalf("restart on the new binary: %v", err)
	}
	waitFor(t, 20*time.Second, "the upgraded member's report", func() bool { return reportOf(id) == newBin })
	if lead := l.Leader(); lead != nil && lead.ID() != id {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := lead.Raft().TransferLeadership(ctx, id)
		cancel()
		if err != nil {
			t.Fatalf("hand leadership to the upgraded member: %v", err)
		}
	}
	pay("with the upgraded member leading")

	if _, err := l.ShutdownNode(i); err != nil {
		t.Fatal(err)
	}
	l.SetNodeVersions(i, oldBin)
	if err := l.RestartNode(i); err != nil {
		t.Fatalf("back on the previous binary before the gate moved: %v", err)
	}
	waitFor(t, 20*time.Second, "the report of the previous binary again", func() bool { return reportOf(id) == oldBin })
	pay("after going back")
	time.Sleep(2 * VersionCheckEvery)
	for _, n := range l.Nodes() {
		if v := n.machine.ClusterVersion(); v != oldBin.Max {
			t.Fatalf("node %d at cluster version %d after going back, want %d", n.ID(), v, oldBin.Max)
		}
	}
}
