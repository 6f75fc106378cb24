package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/txswitch/txswitch/consensus"
	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/storage/central"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Status is one node's view, served by GET /v1/admin/status and printed by
// `txswitch status`.
type Status struct {
	Raft     consensus.Status                            `json:"raft"`
	APIAddr  string                                      `json:"api_addr"`
	Breakers map[string]map[string]txswitch.BreakerState `json:"breakers"`
	// BreakerViews are the same breakers from the same read, each with its
	// transition count and when it entered its state: an operator sees
	// since when a provider is shut out and whether its breaker flaps.
	BreakerViews map[string]map[string]providers.BreakerView `json:"breaker_views"`
	Outbox       OutboxStatus                                `json:"outbox"`
	// ConfigVersion is the applied routing configuration's version (0: none).
	ConfigVersion uint64 `json:"config_version"`
	CentralDB     string `json:"central_db"`
	// Export is the exporter's view: nil without a central database, and on
	// a follower, which does not export (its exporter's zero lag and
	// closed breaker are not the export's; CentralDB names the leader).
	Export *central.ExportStats `json:"export,omitempty"`
	// Versions is the cluster version gate as this node has applied it.
	Versions txswitch.VersionStatus `json:"versions"`
	// Intents are the money-moving calls without a final result in this
	// node's replica, by state, with the oldest of each.
	Intents IntentsStatus `json:"intents"`
	// ProvidersWithPayments are the providers a configuration must keep:
	// they approved payments whose captures, refunds and cancellations go
	// to them (from cluster version 11).
	ProvidersWithPayments []txswitch.ProviderPayments `json:"providers_with_payments,omitempty"`
}

// IntentsStatus is txswitch.IntentStats as the status serves it.
type IntentsStatus struct {
	Count  map[string]int       `json:"count"`
	Oldest map[string]time.Time `json:"oldest,omitempty"`
	// Truncated: more were open than one read counts; Count is a floor.
	Truncated bool `json:"truncated,omitempty"`
}

// OutboxStatus is the export side of the journal.
type OutboxStatus struct {
	Backlog   uint64 `json:"backlog"`
	Watermark uint64 `json:"watermark"`
}

// NodeStatus collects the node's status.
func (n *Node) NodeStatus() (Status, error) {
	views := n.providers.Views()
	st := Status{Raft: n.raft.Status(), APIAddr: n.cfg.APIAdvertise, Breakers: providers.StatesOf(views), BreakerViews: views, CentralDB: "not configured (journal only)"}
	var err error
	if st.Outbox.Backlog, err = n.svc.OutboxBacklog(); err != nil {
		return st, fmt.Errorf("outbox backlog: %w", err)
	}
	if st.Outbox.Watermark, err = n.svc.ExportWatermark(); err != nil {
		return st, fmt.Errorf("export watermark: %w", err)
	}
	if st.Versions, err = n.svc.Versions(); err != nil {
		return st, fmt.Errorf("versions: %w", err)
	}
	if rc, ok := n.machine.Config(); ok {
		st.ConfigVersion = rc.Version
	}
	is, err := n.svc.IntentStats()
	if err != nil {
		return st, fmt.Errorf("intents: %w", err)
	}
	st.Intents = IntentsStatus{Count: is.Count, Oldest: is.Oldest, Truncated: is.Truncated}
	if st.ProvidersWithPayments, err = n.svc.ProvidersWithPayments(); err != nil {
		return st, fmt.Errorf("providers with payments: %w", err)
	}
	if n.central != nil {
		ld := n.raft.Leadership()
		leaderAPI, _ := n.raft.LeaderAPIAddr()
		st.CentralDB = n.central.describe(ld, leaderAPI)
		if ld.IsLeader {
			es := n.central.exporter.Stats()
			st.Export = &es
		}
	}
	return st, nil
}

// codeAddressInUse refuses a new member at a current member's address.
const codeAddressInUse = "member_address_in_use"

// adminOps adapts the node to the API's cluster administration.
type adminOps struct{ n *Node }

func (a adminOps) Status(context.Context) (any, error) { return a.n.NodeStatus() }

func (a adminOps) AddMember(ctx context.Context, raftAddr, apiAddr string, versions *txswitch.VersionRange) (uint64, error) {
	if raftAddr == "" || apiAddr == "" {
		return 0, txswitch.NewError(txswitch.KindInvalid, "invalid_member", "raft_addr", "raft_addr and api_addr are required")
	}
	if err := joinerRunsVersion(a.n.machine.ClusterVersion(), versions); err != nil {
		return 0, err
	}
	id, err := a.n.raft.AddMember(ctx, raftAddr, apiAddr)
	return id, memberErr(err)
}

func (a adminOps) RemoveMember(ctx context.Context, id uint64) error {
	return memberErr(a.n.raft.RemoveMember(ctx, id))
}

func (a adminOps) TransferLeader(ctx context.Context, to uint64) error {
	return memberErr(a.n.raft.TransferLeadership(ctx, to))
}

// versionsUnsaidMax is the newest cluster version whose binaries join
// without saying which versions they run: a joiner that says nothing is
// at most that.
const versionsUnsaidMax = txswitch.VersionOperationReplay

// joinerRunsVersion refuses a new member whose binary cannot run the
// cluster's version (cluster, as this node applied it; the cluster
// version never moves back, so a lagging member can only be more
// lenient). Such a member was added as a voter and stopped at the first
// entry it applied: a voter that never answers, and one more failure
// cost the quorum.
func joinerRunsVersion(cluster int, versions *txswitch.VersionRange) error {
	switch {
	case versions == nil && cluster > versionsUnsaidMax:
		return txswitch.NewError(txswitch.KindConflict, txswitch.CodeVersionNotSupported, "versions", fmt.Sprintf(
			"the cluster runs version %d and the request does not say which cluster versions the joining node's binary runs "+
				"(\"versions\": {\"min\": N, \"max\": M}; txswitch node --join sends them): a binary of version %d or older says nothing, "+
				"and would become a member and stop at once; join with a binary that runs cluster version %d", cluster, versionsUnsaidMax, cluster))
	case versions != nil && (cluster < versions.Min || cluster > versions.Max):
		return txswitch.NewError(txswitch.KindConflict, txswitch.CodeVersionNotSupported, "versions", fmt.Sprintf(
			"the cluster runs version %d and the joining node's binary runs versions %d..%d: "+
				"it would become a member and stop at once; join with a binary that runs cluster version %d", cluster, versions.Min, versions.Max, cluster))
	}
	return nil
}

// memberErr turns the membership errors a caller can act on into API
// errors (retry later, go to the leader); the rest stay internal.
func memberErr(err error) error {
	var inUse *consensus.AddressInUseError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consensus.ErrConfChangeInProgress):
		return txswitch.NewError(txswitch.KindConflict, "membership_change_in_progress", "", err.Error())
	case errors.As(err, &inUse):
		field := "raft_addr"
		if inUse.API {
			field = "api_addr"
		}
		return txswitch.NewError(txswitch.KindConflict, codeAddressInUse, field, fmt.Sprintf(
			"%s; to put a new node there, remove member %d first (DELETE /v1/admin/members/%d)",
			err, inUse.Member, inUse.Member))
	case errors.Is(err, consensus.ErrMemberInactive):
		return txswitch.NewError(txswitch.KindConflict, "member_inactive", "to",
			err.Error()+"; leadership stays where it is: check that the member runs and reaches the leader")
	case errors.Is(err, consensus.ErrTransferAborted):
		return txswitch.NewError(txswitch.KindConflict, "leader_transfer_aborted", "to",
			err.Error()+"; leadership did not move to it and writes are taken again: check the member, then retry")
	case errors.Is(err, txswitch.ErrTimeout), errors.Is(err, txswitch.ErrStopped):
		// The change may still commit (a stopping node may have appended
		// it): a blind retry could add a second member that never starts
		// and weakens the quorum.
		return txswitch.NewError(txswitch.KindUnavailable, "outcome_unknown", "", err.Error()+"; check the members before retrying")
	case errors.Is(err, txswitch.ErrNoLeader), errors.Is(err, txswitch.ErrDropped):
		return txswitch.NewError(txswitch.KindUnavailable, "not_leader", "", err.Error())
	case errors.Is(err, txswitch.ErrRemoved):
		return txswitch.ErrorRemoved()
	}
	var te *txswitch.Error
	if errors.As(err, &te) {
		return te
	}
	return txswitch.NewError(txswitch.KindInvalid, "membership_refused", "", err.Error())
}

// clusterMembers reads the members and their addresses from a running
// member's status: a joining node must know where the others are before it
// can answer the leader, long before it has applied the log that says so.
func clusterMembers(memberAPI, adminToken string) ([]consensus.Peer, error) {
	st, err := memberStatus(memberAPI, adminToken, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("read members from %s: %w", memberAPI, err)
	}
	return st.Raft.Members, nil
}

// statusError: a member answered the status request with an error.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// refusedToSay reports a member that answered but would not tell its
// status to this admin token.
func refusedToSay(err error) bool {
	var se *statusError
	return errors.As(err, &se) && (se.code == http.StatusUnauthorized || se.code == http.StatusForbidden)
}

// unreachable reports a request that never reached a running member:
// nothing listens at the address or the connection could not be made.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// memberStatus reads a running member's status (GET /v1/admin/status).
func memberStatus(memberAPI, adminToken string, timeout time.Duration) (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+memberAPI+"/v1/admin/status", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return st, &statusError{code: resp.StatusCode, body: string(b)}
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, err
	}
	return st, nil
}

// joinCluster asks a running member (any: followers forward to the leader)
// to add this node and returns the new member id it was given.
// It sends the cluster versions its binary runs, so that the cluster
// refuses a binary that cannot run its version; a member of an older
// release refuses the field (400 unknown_field), and is asked again
// without it: it could not check anyway.
func joinCluster(memberAPI, adminToken, raftAddr, apiAddr string, versions txswitch.VersionRange) (uint64, error) {
	body, _ := json.Marshal(map[string]any{"raft_addr": raftAddr, "api_addr": apiAddr, "versions": versions})
	var lastErr error
	// Membership changes are refused while another is in flight or right
	// after an election: retry a bounded number of times.
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, retry, err := postJoin(ctx, memberAPI, adminToken, body)
		cancel()
		if err == nil {
			return id, nil
		}
		lastErr = err
		if s := err.Error(); strings.Contains(s, `"unknown_field"`) && strings.Contains(s, `"field":"versions"`) {
			body, _ = json.Marshal(map[string]string{"raft_addr": raftAddr, "api_addr": apiAddr})
			retry = true
		}
		if !retry {
			break
		}
	}
	return 0, fmt.Errorf("join the cluster through %s: %w", memberAPI, lastErr)
}

func postJoin(ctx context.Context, memberAPI, adminToken string, body []byte) (id uint64, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+memberAPI+"/v1/admin/members", bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Only a connection never made proves nothing was asked.
		return 0, unreachable(err), err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		var r struct {
			ID uint64 `json:"id"`
		}
		if err := json.Unmarshal(b, &r); err != nil || r.ID == 0 {
			return 0, false, fmt.Errorf("unexpected answer %s", b)
		}
		return r.ID, false, nil
	case resp.StatusCode == http.StatusConflict && !bytes.Contains(b, []byte(`"`+codeAddressInUse+`"`)) &&
		!bytes.Contains(b, []byte(`"`+txswitch.CodeVersionNotSupported+`"`)),
		resp.StatusCode == http.StatusServiceUnavailable && !bytes.Contains(b, []byte(`"outcome_unknown"`)):
		// A change in progress passes; an address in use stays until an
		// operator removes the member that has it, and a binary too old
		// for the cluster until the node runs another.
		return 0, true, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	default:
		return 0, false, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
}
