package scenarios

import (
	"context"
	"strings"
	"testing"

	"github.com/txswitch/txswitch/chaos"
)

// A panic of the runner (in a check, a fault builder or a flow) fails its
// scenario with the panic and its stack; it used to end the whole run,
// every report with it, half an hour into the deploy gate.
func TestRunnerPanicFailsOnlyItsScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	faultKinds["test_build_panics"] = faultDef{doc: "test: its builder panics", target: targetNone,
		build: func(*env, Fault) (chaos.Fault, error) { panic("builder bug") }}
	defer delete(faultKinds, "test_build_panics")
	flows["test_flow_panics"] = flowDef{doc: "test: panics", run: func(*flowCtx) { panic("flow bug") }}
	defer delete(flows, "test_flow_panics")
	for _, tc := range []struct{ doc, want string }{
		{`name: test/fault_builder_panics
tags: [regression]
traffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}
faults:
  - {kind: test_build_panics, at: 100ms}
expect:
  - min_acked: {min: 1}
`, "runner bug: panic: builder bug"},
		{`name: test/flow_panics
tags: [regression]
traffic: {rate: 5, duration: 1s, mix: {test_flow_panics: 1}}
`, "runner bug: flow test_flow_panics panicked: flow bug"},
	} {
		scs, err := Parse("panic_test.yaml", []byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		r := Run(context.Background(), scs[0], Options{Seed: 1})
		if r.Passed || !strings.HasPrefix(r.Error, tc.want) || !strings.Contains(r.Error, "goroutine") {
			t.Errorf("%s: passed %v, error %q, want it to start with %q and hold the stack", scs[0].Name, r.Passed, r.Error, tc.want)
		}
	}
}
