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
// a blind retry could add a second member. An address a member has is a
// conflict the operator resolves (409 naming the field), not a retry; so
// is a leader transfer to a member that is silent or did not take over.
func TestMemberErr(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
		field  string
	}{
		{consensus.ErrConfChangeInProgress, 409, "membership_change_in_progress", ""},
		{fmt.Errorf("wait: %w", txswitch.ErrTimeout), 503, "outcome_unknown", ""},
		{fmt.Errorf("%w: raft loop ended", txswitch.ErrStopped), 503, "outcome_unknown", ""},
		{txswitch.ErrNoLeader, 503, "not_leader", ""},
		{txswitch.ErrRemoved, 503, "removed_from_cluster", ""},
		{errors.New("address already used by member 2"), 400, "membership_refused", ""},
		{errors.New("3 is not a member"), 400, "membership_refused", ""},
		{fmt.Errorf("add member h:7: %w", &consensus.AddressInUseError{Member: 2, Addr: "h:7"}), 409, "member_address_in_use", "raft_addr"},
		{fmt.Errorf("add member h:7: %w", &consensus.AddressInUseError{Member: 2, API: true, Addr: "h:8"}), 409, "member_address_in_use", "api_addr"},
		{fmt.Errorf("transfer leadership to 3: %w: member 3", consensus.ErrMemberInactive), 409, "member_inactive", "to"},
		{fmt.Errorf("transfer leadership to 3: %w: member 3 did not take over", consensus.ErrTransferAborted), 409, "leader_transfer_aborted", "to"},
		{fmt.Errorf("transfer leadership to 3: %w (leader 1)", consensus.ErrNotLeader), 503, "not_leader", ""},
	} {
		var e *txswitch.Error
		if !errors.As(memberErr(tc.err), &e) {
			t.Errorf("memberErr(%v) = %v, not an API error", tc.err, memberErr(tc.err))
			continue
		}
		if e.Status != tc.status || e.Code != tc.code || e.Field != tc.field {
			t.Errorf("memberErr(%v) = %d %s (field %q), want %d %s (field %q)", tc.err, e.Status, e.Code, e.Field, tc.status, tc.code, tc.field)
		}
	}
}
