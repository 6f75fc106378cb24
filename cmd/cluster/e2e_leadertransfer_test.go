package cluster

import (
	"fmt"
	"testing"
	"time"
)

// TestE2ELeaderTransfer moves the leadership through the admin API.
//
// Sent to a follower, a transfer is forwarded to the leader and answered
// 200 once the member leads, be it another follower or the follower
// itself: the leader change the follower then sees is the transfer's own
// doing, not the replacement of a frozen leader (503 outcome_unknown).
//
// A transfer to a stopped member is refused, 409 member_inactive, once the
// leader has not heard from it for an election timeout (until then it may
// start and be given up, 409 leader_transfer_aborted); it is never left to
// its deadline (503 outcome_unknown), and writes go on.
func TestE2ELeaderTransfer(t *testing.T) {
	l := startE2E(t)
	for _, toItself := range []bool{false, true} {
		li := e2eLeaderIndex(t, l)
		via := (li + 1) % l.Size()
		to := (li + 2) % l.Size()
		if toItself {
			to = via
		}
		toID := l.Node(to).ID()
		r := e2eAdmin(t, l, l.Node(via).APIAddr(), "POST", "/v1/admin/leader", map[string]uint64{"to": toID})
		if want := fmt.Sprintf(`{"to":%d}`, toID); r.Status != 200 || string(r.Body) != want {
			t.Fatalf("transfer to %d through the follower %d (to itself: %t): %d %s, want 200 %s",
				toID, l.Node(via).ID(), toItself, r.Status, r.Body, want)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("member %d to lead", toID), func() bool { return l.LeaderIndex() == to })
	}

	li := e2eLeaderIndex(t, l)
	leader := l.Node(li)
	stopped := (li + 1) % l.Size()
	stoppedID := l.Node(stopped).ID()
	if err := l.StopNode(stopped); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the transfer to the stopped member refused up front", func() bool {
		r := e2eAdmin(t, l, leader.APIAddr(), "POST", "/v1/admin/leader", map[string]uint64{"to": stoppedID})
		switch {
		case r.Status == 409 && r.errCode() == "member_inactive":
			return true
		case r.Status == 409 && r.errCode() == "leader_transfer_aborted":
			return false
		}
		t.Fatalf("transfer to the stopped member %d: %d %s", stoppedID, r.Status, r.Body)
		return false
	})
	e2eCreateOrder(t, l, leader.APIAddr(), e2eOrderReq(1000, "EUR", "NL"))
}
