package chaos

import (
	"context"
	"fmt"
	"strings"

	"github.com/txswitch/txswitch/cmd/cluster"
)

// Sabotage is a MUTANT: it switches one flaw of the switch itself on
// (txswitch.Sabotage: charge twice on retry, acknowledge before commit,
// apply an entry twice) on its target nodes, and Undo switches it off. A
// scenario with it must fail the checks that claim to catch the flaw.
// Target "all" is every running node (where leadership goes, the flaw
// goes); otherwise one node ("leader", "follower", "n1"...). A node
// restarted meanwhile comes back honest.
type Sabotage struct {
	record
	c     *Cluster
	flaw  string
	spec  string
	nodes []*cluster.Node
	base  map[*cluster.Node]int64
}

// NewSabotage returns the mutant switching flaw on at target.
func NewSabotage(c *Cluster, flaw, target string) *Sabotage {
	return &Sabotage{record: record{kind: "mutant_" + flaw, target: target}, c: c, flaw: flaw, spec: target}
}

// Inject switches the flaw on.
func (f *Sabotage) Inject(context.Context) error {
	var err error
	if f.spec == "all" {
		f.nodes = f.c.Running()
	} else {
		var n *cluster.Node
		if _, n, err = f.c.runningSlot(f.spec); err == nil {
			f.nodes = []*cluster.Node{n}
		}
	}
	f.base = map[*cluster.Node]int64{}
	var ids []string
	for _, n := range f.nodes {
		sab := n.Service().Sabotage()
		f.base[n] = sab.Fired(f.flaw)
		if !sab.Set(f.flaw, true) {
			err = fmt.Errorf("unknown flaw %q", f.flaw)
			break
		}
		ids = append(ids, fmt.Sprintf("n%d", n.ID()))
	}
	if err == nil && len(f.nodes) == 0 {
		err = fmt.Errorf("no running node for target %q", f.spec)
	}
	if f.spec != "all" && len(ids) == 1 {
		f.setTarget(ids[0])
	}
	f.add("inject", false, f.flaw+" on "+strings.Join(ids, ","), err)
	return err
}

// Undo switches the flaw off and records how often it broke something
// (zero: the mutant never got its chance, and the scenario is vacuous).
func (f *Sabotage) Undo(context.Context) error {
	var fired int64
	for _, n := range f.nodes {
		sab := n.Service().Sabotage()
		sab.Set(f.flaw, false)
		fired += sab.Fired(f.flaw) - f.base[n]
	}
	f.add("undo", false, "", nil)
	f.add("effect", fired > 0, fmt.Sprintf("%s broke the switch %d times", f.flaw, fired), nil)
	return nil
}
