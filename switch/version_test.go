package txswitch_test

import (
	"context"
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

var (
	oldBinary = txswitch.VersionRange{Min: 1, Max: 1}
	newBinary = txswitch.VersionRange{Min: 1, Max: 2}
)

// replica is one member's machine, fed the same log as the others.
type replica struct {
	store *memory.Store
	m     *txswitch.Machine
	index uint64
}

func newReplica(t *testing.T, binary txswitch.VersionRange) *replica {
	t.Helper()
	st := memory.NewStore()
	m, err := txswitch.NewMachineFor(st, binary)
	if err != nil {
		t.Fatal(err)
	}
	return &replica{store: st, m: m}
}

// apply applies one command and returns the apply result's error code ("" when
// it applied) or the apply error.
func (r *replica) apply(t *testing.T, data []byte) (string, error) {
	t.Helper()
	r.index++
	res, err := r.m.Apply([]txswitch.Command{{Index: r.index, Term: 1, Data: data}})
	if err != nil {
		return "", err
	}
	if ar := res[0].(*txswitch.ApplyResult); ar.Err != nil {
		return ar.Err.Code, nil
	}
	return "", nil
}

// TestClusterVersionGateInApply plays a rolling upgrade on two members'
// machines, the new binary beside the old: the gate moves only when every
// listed member reported support, a duplicate or skipping move changes
// nothing, and a member whose binary cannot run the new version stops
// (an apply error) instead of diverging, also when it restarts on that state.
func TestClusterVersionGateInApply(t *testing.T) {
	n1, n2 := newReplica(t, newBinary), newReplica(t, oldBinary)
	both := func(data []byte) (string, string, error, error) {
		c1, e1 := n1.apply(t, data)
		c2, e2 := n2.apply(t, data)
		return c1, c2, e1, e2
	}
	versions := func() (int, int) { return n1.m.ClusterVersion(), n2.m.ClusterVersion() }
	if v1, v2 := versions(); v1 != 1 || v2 != 1 {
		t.Fatalf("fresh cluster versions %d, %d", v1, v2)
	}
	both(txswitch.NodeVersionCommand(1, newBinary))
	both(txswitch.NodeVersionCommand(2, oldBinary))

	// Member 2 still runs the old binary: a move to 2 is refused everywhere.
	c1, c2, e1, e2 := both(txswitch.ClusterVersionCommand(2, 1, 2))
	if e1 != nil || e2 != nil || c1 != txswitch.CodeVersionNotSupported || c2 != c1 {
		t.Fatalf("move past an old member: %q %q %v %v", c1, c2, e1, e2)
	}
	// Skipping a version is refused too.
	if c, err := n1.apply(t, txswitch.ClusterVersionCommand(3, 1)); err != nil || c != txswitch.CodeVersionNotSupported {
		t.Fatalf("skip to 3: %q %v", c, err)
	}
	if v1, v2 := versions(); v1 != 1 || v2 != 1 {
		t.Fatalf("versions moved: %d, %d", v1, v2)
	}

	// Member 2 claims the new binary but (a bad deploy) still runs the
	// old one: the move applies on member 1 and stops member 2.
	both(txswitch.NodeVersionCommand(2, newBinary))
	c1, _, e1, e2 = both(txswitch.ClusterVersionCommand(2, 1, 2))
	if e1 != nil || c1 != "" || n1.m.ClusterVersion() != 2 {
		t.Fatalf("move to 2 on the new binary: %q %v, version %d", c1, e1, n1.m.ClusterVersion())
	}
	if e2 == nil || !strings.Contains(e2.Error(), "upgrade this node") {
		t.Fatalf("the old binary applied version 2: %v", e2)
	}
	// A second move to 2 (a raced leader) changes nothing.
	if c, err := n1.apply(t, txswitch.ClusterVersionCommand(2, 1, 2)); err != nil || c != txswitch.CodeVersionNotSupported || n1.m.ClusterVersion() != 2 {
		t.Fatalf("repeated move: %q %v, version %d", c, err, n1.m.ClusterVersion())
	}

	// The state at version 2: an old binary refuses to open it or take
	// it as a snapshot; a new one takes it with its version.
	if _, err := txswitch.NewMachineFor(n1.store, oldBinary); err == nil || !strings.Contains(err.Error(), "cluster version 2") {
		t.Fatalf("old binary opened a version-2 state: %v", err)
	}
	idx, image, err := n1.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := newReplica(t, oldBinary).m.Restore(idx, image); err == nil {
		t.Fatal("old binary restored a version-2 snapshot")
	}
	n3 := newReplica(t, newBinary)
	if err := n3.m.Restore(idx, image); err != nil || n3.m.ClusterVersion() != 2 {
		t.Fatalf("new binary restore: %v, version %d", err, n3.m.ClusterVersion())
	}
}

// TestClusterVersionAdvance drives the service side: members report once,
// the leader moves the gate only when every member it names supports the
// next version, and followers never move it.
func TestClusterVersionAdvance(t *testing.T) {
	ctx := context.Background()
	st := memory.NewStore()
	m, err := txswitch.NewMachineFor(st, newBinary)
	if err != nil {
		t.Fatal(err)
	}
	log := memory.NewLog(m)
	svc := txswitch.NewService(txswitch.ServiceConfig{Log: log, Store: st, Machine: m, Providers: memory.NewProviders(),
		Clock: &fakeClock{}, IDs: &txswitch.SequentialIDs{}})

	if err := svc.ReportVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := svc.ReportVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(log.Entries()); n != 1 {
		t.Fatalf("an unchanged report was proposed again: %d entries", n)
	}
	// Member 2 has not reported: nothing moves.
	if v, err := svc.AdvanceClusterVersion(ctx, []uint64{1, 2}); err != nil || v != 1 || len(log.Entries()) != 1 {
		t.Fatalf("advance without member 2's report: %d %v, %d entries", v, err, len(log.Entries()))
	}
	if err := svc.ReportVersion(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// A follower does not move it.
	log.SetLeadership(txswitch.Leadership{IsLeader: false, LeaderID: 2, Term: 2})
	if v, err := svc.AdvanceClusterVersion(ctx, []uint64{1, 2}); err != nil || v != 1 {
		t.Fatalf("a follower moved the gate: %d %v", v, err)
	}
	log.SetLeadership(txswitch.Leadership{IsLeader: true, LeaderID: 1, Term: 3})
	if svc.VersionActive(2) {
		t.Fatal("version 2 active before the gate moved")
	}
	if v, err := svc.AdvanceClusterVersion(ctx, []uint64{2, 1}); err != nil || v != 2 {
		t.Fatalf("advance: %d %v", v, err)
	}
	if !svc.VersionActive(2) {
		t.Fatal("version 2 not active after the move")
	}
	// This binary runs nothing past 2.
	if v, err := svc.AdvanceClusterVersion(ctx, []uint64{1, 2}); err != nil || v != 2 {
		t.Fatalf("advance past the binary: %d %v", v, err)
	}
	vs, err := svc.Versions()
	if err != nil || vs.Cluster != 2 || vs.Binary != newBinary || len(vs.Members) != 2 || vs.Members[2] != newBinary {
		t.Fatalf("versions = %+v, %v", vs, err)
	}
}

// Apply reads the cluster version once per batch: a move applied earlier
// in the same batch is what the later commands see (two moves in one
// batch: the second starts from the first's version).
func TestClusterVersionMovesWithinOneBatch(t *testing.T) {
	r := newReplica(t, txswitch.VersionRange{Min: 1, Max: 3})
	if c, err := r.apply(t, txswitch.NodeVersionCommand(1, txswitch.VersionRange{Min: 1, Max: 3})); err != nil || c != "" {
		t.Fatalf("report: %q %v", c, err)
	}
	res, err := r.m.Apply([]txswitch.Command{
		{Index: 2, Term: 1, Data: txswitch.ClusterVersionCommand(2, 1)},
		{Index: 3, Term: 1, Data: txswitch.ClusterVersionCommand(3, 1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res {
		if ar := x.(*txswitch.ApplyResult); ar.Err != nil {
			t.Fatalf("move %d in the batch refused: %v", i+2, ar.Err)
		}
	}
	if v := r.m.ClusterVersion(); v != 3 {
		t.Fatalf("cluster version %d after two moves in one batch, want 3", v)
	}
}
