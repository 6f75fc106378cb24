package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/txswitch/txswitch/cmd/cluster"
)

// Cluster is the in-process cluster faults act on: a cluster.Local plus
// the members chaos added itself (a wiped node rejoining as a new member
// cannot go through Local, whose slots bootstrap with their old ids).
type Cluster struct {
	*cluster.Local
	opts ClusterOptions

	mu      sync.Mutex
	extra   []*cluster.Node
	wiped   map[int]bool
	rejoins int
}

// ClusterOptions are the settings chaos needs to start members itself;
// they should match the LocalConfig the cluster was started with.
type ClusterOptions struct {
	TickInterval time.Duration
	ResolveEvery time.Duration
	Logger       *zap.Logger
}

// NewCluster wraps a running local cluster.
func NewCluster(l *cluster.Local, opts ClusterOptions) *Cluster {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Cluster{Local: l, opts: opts, wiped: map[int]bool{}}
}

// Running returns every running node: Local's slots, then chaos's own
// members in the order they joined.
func (c *Cluster) Running() []*cluster.Node {
	out := c.Local.Nodes()
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(out, c.extra...)
}

// LeaderNode returns the running node that leads, if any.
func (c *Cluster) LeaderNode() *cluster.Node {
	for _, n := range c.Running() {
		if n.Raft().Leadership().IsLeader {
			return n
		}
	}
	return nil
}

// Close stops chaos's members, then the local cluster.
func (c *Cluster) Close() {
	c.mu.Lock()
	extra := c.extra
	c.extra = nil
	c.mu.Unlock()
	for _, n := range extra {
		if err := n.Stop(); err != nil {
			c.opts.Logger.Warn("stop rejoined node", zap.Uint64("node", n.ID()), zap.Error(err))
		}
	}
	c.Local.Close()
}

// leaderWait bounds how long a "leader" or "follower" target waits for a
// leader: a fault right after a restart or election may find none for a
// few heartbeats (more on a loaded machine), and aiming at no node would
// make the fault miss.
const leaderWait = 5 * time.Second

// leaderSlot is the leader's slot, waiting up to leaderWait for one.
func (c *Cluster) leaderSlot() int {
	deadline := time.Now().Add(leaderWait)
	for {
		if i := c.Local.LeaderIndex(); i >= 0 || time.Now().After(deadline) {
			return i
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resolveSlot maps a node target to a Local slot: "leader", "follower"
// (the first running follower after the leader), or "n1".."nN" (1-based).
func (c *Cluster) resolveSlot(target string) (int, error) {
	size := c.Local.Size()
	switch {
	case target == "leader":
		if i := c.leaderSlot(); i >= 0 {
			return i, nil
		}
		return -1, errors.New("no leader among the local slots")
	case target == "follower":
		lead := c.leaderSlot()
		if lead < 0 {
			return -1, errors.New("no leader to pick a follower of")
		}
		// A node whose raft stopped (its disk failed) is still a running
		// slot but no longer a follower: a fault aimed at "a follower"
		// must hit one that is serving.
		for k := 1; k < size; k++ {
			i := (lead + k) % size
			if n := c.Local.Node(i); n != nil && !n.Raft().Status().Stopped {
				return i, nil
			}
		}
		return -1, errors.New("no running follower")
	case strings.HasPrefix(target, "n"):
		i, err := strconv.Atoi(target[1:])
		if err != nil || i < 1 || i > size {
			return -1, fmt.Errorf("node target %q: want n1..n%d", target, size)
		}
		return i - 1, nil
	}
	return -1, fmt.Errorf("unknown node target %q (leader, follower, n1..n%d)", target, size)
}

// runningSlot resolves target to a slot whose node is running.
func (c *Cluster) runningSlot(target string) (int, *cluster.Node, error) {
	slot, err := c.resolveSlot(target)
	if err != nil {
		return -1, nil, err
	}
	n := c.Local.Node(slot)
	if n == nil {
		return -1, nil, fmt.Errorf("node n%d is not running", slot+1)
	}
	return slot, n, nil
}

// ValidNodeTarget reports whether target names a node of a size-node
// cluster (checked when a scenario file is loaded).
func ValidNodeTarget(target string, size int) bool {
	if target == "leader" || target == "follower" {
		return true
	}
	if strings.HasPrefix(target, "n") {
		i, err := strconv.Atoi(target[1:])
		return err == nil && i >= 1 && i <= size
	}
	return false
}

// memberIDs returns the sorted ids of the running nodes.
func (c *Cluster) memberIDs() []uint64 {
	var ids []uint64
	for _, n := range c.Running() {
		ids = append(ids, n.ID())
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	return ids
}

// admin sends one admin API request to any running node, retrying while
// the cluster answers 409 (a membership change in flight) or 503 (no
// leader yet), and returns the final status and body.
func (c *Cluster) admin(ctx context.Context, method, path string) (int, []byte, error) {
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
		nodes := c.Running()
		if len(nodes) == 0 {
			return 0, nil, errors.New("no running node")
		}
		n := nodes[attempt%len(nodes)]
		req, err := http.NewRequestWithContext(ctx, method, "http://"+n.APIAddr()+path, nil)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+c.Local.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusServiceUnavailable {
			lastErr = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
			continue
		}
		return resp.StatusCode, b, nil
	}
	return 0, nil, lastErr
}
