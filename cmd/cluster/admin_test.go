package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/txswitch/txswitch/consensus"
	txswitch "github.com/txswitch/txswitch/switch"
)

// A membership change whose outcome is unknown (timed out, or the node
// stopped with it in flight) must not be answered as the caller's mistake:
// a blind retry could add a second member.
func TestMemberErr(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{consensus.ErrConfChangeInProgress, 409, "membership_change_in_progress"},
		{fmt.Errorf("wait: %w", txswitch.ErrTimeout), 503, "outcome_unknown"},
		{fmt.Errorf("%w: raft loop ended", txswitch.ErrStopped), 503, "outcome_unknown"},
		{txswitch.ErrNoLeader, 503, "not_leader"},
		{txswitch.ErrRemoved, 503, "removed_from_cluster"},
		{errors.New("address already used by member 2"), 400, "membership_refused"},
	} {
		var e *txswitch.Error
		if !errors.As(memberErr(tc.err), &e) || e.Status != tc.status || e.Code != tc.code {
			t.Errorf("memberErr(%v) = %v, want %d %s", tc.err, memberErr(tc.err), tc.status, tc.code)
		}
	}
}
