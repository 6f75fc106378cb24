package chaos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	tcptransport "github.com/txswitch/txswitch/consensus/transport/tcp"
)

// Partition cuts raft traffic between a set of nodes and the rest through
// the transport filter hook (tcptransport.SetFilter). Only raft messages
// are cut: the API and the PSPs stay reachable, so a client talking to
// the isolated side sees what a gateway behind the same partition would.
// A node restarted during the partition gets a new transport and is no
// longer cut.
type Partition struct {
	record
	c       *Cluster
	spec    string
	oneWay  bool
	cut     map[uint64]bool
	addrs   []string
	dropped uint64
}

// Partition targets: "leader" isolates the leader; "follower" one
// follower; "minority" the leader plus as many followers as keep it a
// minority (n=3: the leader alone; n=5: the leader and one follower).
// With oneWay the isolated side cannot send but still receives.
func NewPartition(c *Cluster, target string, oneWay bool) *Partition {
	kind := "partition"
	if oneWay {
		kind = "partition_one_way"
	}
	return &Partition{record: record{kind: kind, target: target}, c: c, spec: target, oneWay: oneWay}
}

// ValidPartitionTarget reports whether target is a partition target.
func ValidPartitionTarget(target string) bool {
	return target == "leader" || target == "follower" || target == "minority"
}

func (p *Partition) isolate() (map[uint64]bool, error) {
	lead := p.c.LeaderNode()
	if lead == nil {
		return nil, errors.New("no leader")
	}
	ids := p.c.memberIDs()
	cut := map[uint64]bool{}
	switch p.spec {
	case "leader":
		cut[lead.ID()] = true
	case "follower":
		for _, id := range ids {
			if id != lead.ID() {
				cut[id] = true
				break
			}
		}
	case "minority":
		cut[lead.ID()] = true
		for _, id := range ids {
			if len(cut) >= (len(ids)-1)/2 {
				break
			}
			cut[id] = true
		}
	default:
		return nil, fmt.Errorf("unknown partition target %q", p.spec)
	}
	if len(cut) == 0 || len(cut) >= len(ids) {
		return nil, fmt.Errorf("partition %q of %d nodes cuts %d", p.spec, len(ids), len(cut))
	}
	return cut, nil
}

// Inject installs the filters.
func (p *Partition) Inject(context.Context) error {
	err := p.inject()
	p.add("inject", false, "", err)
	return err
}

func (p *Partition) inject() error {
	cut, err := p.isolate()
	if err != nil {
		return err
	}
	p.cut = cut
	var names []string
	for id := range cut {
		names = append(names, fmt.Sprintf("id%d", id))
	}
	sort.Strings(names)
	p.setTarget(strings.Join(names, "+"))
	for _, n := range p.c.Running() {
		tr, ok := tcptransport.Lookup(n.RaftAddr())
		if !ok {
			return fmt.Errorf("no transport listening on %s (node %d)", n.RaftAddr(), n.ID())
		}
		p.addrs = append(p.addrs, n.RaftAddr())
		p.dropped += tr.Stats().Dropped
		inside := cut[n.ID()]
		switch {
		case inside:
			tr.SetFilter(func(to uint64) bool { return !cut[to] })
		case !p.oneWay:
			tr.SetFilter(func(to uint64) bool { return cut[to] })
		}
	}
	return nil
}

// Undo lifts the filters and records how many messages were dropped.
func (p *Partition) Undo(context.Context) error {
	if p.cut == nil {
		return nil
	}
	var after uint64
	for _, a := range p.addrs {
		if tr, ok := tcptransport.Lookup(a); ok {
			after += tr.Stats().Dropped
			tr.SetFilter(nil)
		}
	}
	p.add("undo", false, "", nil)
	// A transport closed meanwhile (node restarted) takes its counter
	// with it; a negative difference then means "unknown", not zero.
	hit := after > p.dropped
	p.add("effect", hit, fmt.Sprintf("%d raft messages dropped", int64(after)-int64(p.dropped)), nil)
	p.cut = nil
	return nil
}
