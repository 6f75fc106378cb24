package scenarios

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
)

// undoFails is a fault whose Undo fails, as a node that cannot restart.
type undoFails struct{ at time.Time }

func (f *undoFails) Kind() string                 { return "test_undo_fails" }
func (f *undoFails) Target() string               { return "n2" }
func (f *undoFails) Inject(context.Context) error { f.at = time.Now(); return nil }
func (f *undoFails) Undo(context.Context) error   { return errors.New("node n2 cannot reopen its data") }
func (f *undoFails) Fired() []chaos.Event {
	return []chaos.Event{{At: f.at, Kind: f.Kind(), Target: "n2", Action: "inject"},
		{At: f.at, Kind: f.Kind(), Target: "n2", Action: "effect", Hit: true}}
}

// A fault that cannot be undone (a node that does not come back) fails the
// scenario: the checks would otherwise judge the survivors alone and pass.
func TestUndoFailureFailsTheScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	faultKinds["test_undo_fails"] = faultDef{doc: "test: Undo fails", target: targetNone,
		build: func(*env, Fault) (chaos.Fault, error) { return &undoFails{}, nil }}
	defer delete(faultKinds, "test_undo_fails")
	scs, err := Parse("undo_test.yaml", []byte(`name: test/undo_fails
description: a fault whose undo fails
tags: [regression]
traffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}
faults:
  - {kind: test_undo_fails, at: 100ms, for: 200ms}
expect:
  - min_acked: {min: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := Run(context.Background(), scs[0], Options{Seed: 1})
	if r.Passed {
		t.Fatal("a scenario whose fault could not be undone passed")
	}
	if rep := FailureReport(r, 1); !strings.Contains(rep, "undo of fault test_undo_fails") {
		t.Fatalf("the failure does not name the undo:\n%s", rep)
	}
}
