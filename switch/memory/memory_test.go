package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func scanAll(t *testing.T, r txswitch.Reader, start, end string) []string {
	t.Helper()
	var out []string
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	if err := r.Scan([]byte(start), e, func(k, v []byte) bool {
		out = append(out, string(k)+"="+string(v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStoreBatch(t *testing.T) {
	s := memory.NewStore()
	b := s.NewBatch()
	for _, k := range []string{"b", "a", "d", "c"} {
		if err := b.Set([]byte(k), []byte("1"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch()
	_ = b.Set([]byte("bb"), []byte("2"))
	_ = b.Delete([]byte("c"))
	_ = b.Set([]byte("a"), []byte("2a"))
	_ = b.Set([]byte("e"), nil) // empty value is a value, not a delete
	tests := []struct {
		name string
		r    txswitch.Reader
		want []string
	}{
		{"batch reads its writes", b, []string{"a=2a", "b=1b", "bb=2", "d=1d", "e="}},
		{"store unchanged before commit", s, []string{"a=1a", "b=1b", "c=1c", "d=1d"}},
	}
	for _, tc := range tests {
		if got := scanAll(t, tc.r, "", ""); !slices.Equal(got, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := scanAll(t, b, "b", "d"); !slices.Equal(got, []string{"b=1b", "bb=2"}) {
		t.Fatalf("range scan = %v", got)
	}
	if _, err := b.Get([]byte("c")); !errors.Is(err, txswitch.ErrNotFound) {
		t.Fatalf("deleted key in batch: %v", err)
	}
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s, "", ""); !slices.Equal(got, []string{"a=2a", "b=1b", "bb=2", "d=1d", "e="}) {
		t.Fatalf("after commit: %v", got)
	}
	if idx, _ := s.AppliedIndex(); idx != 2 {
		t.Fatalf("applied = %d", idx)
	}
	if err := b.Set([]byte("x"), nil); err == nil {
		t.Fatal("write after commit accepted")
	}
	// A closed, uncommitted batch changes nothing.
	b = s.NewBatch()
	_ = b.Set([]byte("z"), []byte("1"))
	_ = b.Close()
	if _, err := s.Get([]byte("z")); !errors.Is(err, txswitch.ErrNotFound) {
		t.Fatal("closed batch leaked a write")
	}
}

func TestStoreBatchDeleteRange(t *testing.T) {
	s := memory.NewStore()
	b := s.NewBatch()
	for _, k := range []string{"x/1", "x/2", "x/3", "x/4", "y"} {
		_ = b.Set([]byte(k), []byte("1"))
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch()
	_ = b.Set([]byte("x/25"), []byte("2"))
	if err := b.DeleteRange([]byte("x/2"), []byte("x/4")); err != nil {
		t.Fatal(err)
	}
	_ = b.Set([]byte("x/3"), []byte("3"))
	if err := b.DeleteRange([]byte("x/4"), []byte("x/2")); err == nil {
		t.Fatal("inverted range accepted")
	}
	want := []string{"x/1=1", "x/3=3", "x/4=1", "y=1"}
	if got := scanAll(t, b, "", ""); !slices.Equal(got, want) {
		t.Fatalf("through the batch: %v, want %v", got, want)
	}
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s, "", ""); !slices.Equal(got, want) {
		t.Fatalf("committed: %v, want %v", got, want)
	}
}

func TestStoreSnapshotRestore(t *testing.T) {
	s := memory.NewStore()
	b := s.NewBatch()
	for i := range 50 {
		_ = b.Set(fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i))
	}
	_ = b.Commit(7)
	idx, img, err := s.SnapshotState()
	if err != nil || idx != 7 {
		t.Fatalf("snapshot %d %v", idx, err)
	}
	s2 := memory.NewStore()
	b2 := s2.NewBatch()
	_ = b2.Set([]byte("stale"), []byte("x"))
	_ = b2.Commit(1)
	if err := s2.RestoreState(idx, img); err != nil {
		t.Fatal(err)
	}
	if string(s2.Dump()) != string(s.Dump()) {
		t.Fatal("restore differs")
	}
	if err := s2.RestoreState(8, img); err == nil {
		t.Fatal("index mismatch accepted")
	}
	// The streamed forms carry the same image.
	im, err := s.OpenImage()
	if err != nil || im.Index() != 7 {
		t.Fatalf("open image: %v", err)
	}
	var buf bytes.Buffer
	if _, err := im.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	s3 := memory.NewStore()
	if err := s3.RestoreImage(7, &buf, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	if string(s3.Dump()) != string(s.Dump()) {
		t.Fatal("streamed restore differs")
	}
	if err := s3.RestoreImage(7, strings.NewReader("{}"), 10); err == nil {
		t.Fatal("short image accepted")
	}
}

// countingMachine records applied commands.
type countingMachine struct {
	applied []txswitch.Command
}

func (m *countingMachine) Apply(cmds []txswitch.Command) ([]any, error) {
	m.applied = append(m.applied, cmds...)
	out := make([]any, len(cmds))
	for i, c := range cmds {
		out[i] = string(c.Data)
	}
	return out, nil
}
func (m *countingMachine) AppliedIndex() uint64 {
	if len(m.applied) == 0 {
		return 0
	}
	return m.applied[len(m.applied)-1].Index
}
func (m *countingMachine) Snapshot() (uint64, []byte, error) { return 0, nil, nil }
func (m *countingMachine) Restore(uint64, []byte) error      { return nil }

func TestLog(t *testing.T) {
	m := &countingMachine{}
	l := memory.NewLog(m)
	ctx := context.Background()
	v, err := l.Propose(ctx, []byte("a"))
	if err != nil || v != "a" {
		t.Fatalf("propose = %v %v", v, err)
	}
	l.Fail(func(d []byte) bool { return string(d) == "b" }, txswitch.ErrTimeout, true)
	l.Fail(nil, txswitch.ErrQueueFull, false)
	tests := []struct {
		data    string
		wantErr error
	}{
		{"b", txswitch.ErrTimeout},   // applied, then times out
		{"c", txswitch.ErrQueueFull}, // dropped
		{"d", nil},
	}
	for _, tc := range tests {
		if _, err := l.Propose(ctx, []byte(tc.data)); !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: err %v, want %v", tc.data, err, tc.wantErr)
		}
	}
	var got []string
	for _, e := range l.Entries() {
		got = append(got, fmt.Sprintf("%d:%s", e.Index, e.Data))
	}
	if !slices.Equal(got, []string{"1:a", "2:b", "3:d"}) {
		t.Fatalf("entries = %v", got)
	}
	l.SetLeadership(txswitch.Leadership{Term: 2})
	if _, err := l.Propose(ctx, []byte("e")); !errors.Is(err, txswitch.ErrNoLeader) {
		t.Fatalf("follower propose: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.ReadBarrier(cctx); !errors.Is(err, txswitch.ErrTimeout) {
		t.Fatalf("barrier on cancelled ctx: %v", err)
	}
}

func TestProviderScript(t *testing.T) {
	p := memory.NewProvider("psp")
	ps := memory.NewProviders(p)
	boom := errors.New("boom")
	p.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeDeclined, Code: "x"}}, memory.Step{Err: boom})
	pv, ok := ps.Get("psp", "card")
	if !ok {
		t.Fatal("provider missing")
	}
	ctx := context.Background()
	req := txswitch.ProviderRequest{Op: txswitch.OpAuthorize, IdempotencyKey: "k"}
	steps := []struct {
		outcome txswitch.ProviderOutcome
		err     error
	}{
		{txswitch.OutcomeDeclined, nil},
		{"", boom},
		{txswitch.OutcomeApproved, nil}, // queue empty: approve
	}
	for i, st := range steps {
		res, err := pv.Do(ctx, req)
		if res.Outcome != st.outcome || !errors.Is(err, st.err) {
			t.Fatalf("step %d: %v %v", i, res.Outcome, err)
		}
	}
	if res, _ := pv.Do(ctx, txswitch.ProviderRequest{Op: txswitch.OpStatus}); res.Outcome != txswitch.OutcomeNotFound {
		t.Fatalf("default status = %s", res.Outcome)
	}
	ps.SetState("psp", "card", txswitch.BreakerOpen)
	_, err := pv.Do(ctx, req)
	var pe *txswitch.ProviderError
	if !errors.As(err, &pe) || !pe.Definitive || pe.Code != "breaker_open" {
		t.Fatalf("open breaker: %v", err)
	}
	if ps.State("psp", "ideal") != txswitch.BreakerClosed {
		t.Fatal("unknown breaker not closed")
	}
	if n := len(p.Calls()); n != 4 {
		t.Fatalf("calls = %d (the open breaker must not reach the provider)", n)
	}
	if err := ps.Configure([]txswitch.ProviderConfig{{Name: "new"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := ps.Get("new", "card"); !ok {
		t.Fatal("configured provider missing")
	}
}
