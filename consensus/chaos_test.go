package consensus

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/txswitch/txswitch/consensus/memnet"
	txswitch "github.com/txswitch/txswitch/switch"
)

var seedFlag = flag.Uint64("consensus.seed", 0, "replay the randomized consensus test with this seed (or env CONSENSUS_SEED)")

func chaosSeed(t *testing.T) uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	if s := os.Getenv("CONSENSUS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CONSENSUS_SEED: %v", err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

type regInput struct {
	write bool
	value string
}

// registerModel is a single read/write register for porcupine.
var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return "write " + in.value
		}
		return "read -> " + fmt.Sprint(output)
	},
}

// definite reports errors after which the proposal certainly never applies.
func definite(err error) bool {
	return errors.Is(err, txswitch.ErrNoLeader) || errors.Is(err, txswitch.ErrQueueFull) || errors.Is(err, txswitch.ErrDropped)
}

// TestRandomizedChaos runs concurrent clients against a 5-node cluster while
// a nemesis kills and restarts nodes (leader first), partitions and heals,
// over a lossy, duplicating, reordering network. Afterwards: every
// acknowledged write is applied exactly once on every node, no write twice,
// all state machines are equal, and the register history is linearizable.
// The nemesis and the network derive from the seed (printed on failure;
// replay with CONSENSUS_SEED=n); goroutine scheduling is not replayed.
func TestRandomizedChaos(t *testing.T) {
	seed := chaosSeed(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("randomized test failed: replay with CONSENSUS_SEED=%d", seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	all5 := []uint64{1, 2, 3, 4, 5}
	// armed[id] names the failpoint where node id will crash next.
	var fpMu sync.Mutex
	armed := map[uint64]string{}
	c := newCluster(t, 5, int64(seed), func(cfg *Config) {
		cfg.SnapshotEvery = 64
		cfg.SnapshotKeep = 16
		cfg.LagRetain = 48 // short absences catch up from the log, longer ones by snapshot
		// Snapshot images inline on even seeds, streamed and staged on odd.
		cfg.StreamImages = func() bool { return seed%2 == 1 }
		cfg.MaxProposalQueue = 64
		id := cfg.ID
		cfg.Failpoint = func(name string) {
			fpMu.Lock()
			hit := armed[id] == name
			if hit {
				delete(armed, id)
			}
			fpMu.Unlock()
			if hit {
				panic(ErrFailpointCrash)
			}
		}
	})
	failpoints := []string{FailpointBeforePersist, FailpointAfterPersist, FailpointAfterSend, FailpointMidApply, FailpointAfterSnapshot}
	// crashedAtFailpoint lists nodes whose loop died at a failpoint.
	crashedAtFailpoint := func() []uint64 {
		var ids []uint64
		for _, id := range all5 {
			if n := c.node(id); n != nil {
				select {
				case <-n.Done():
					ids = append(ids, id)
				default:
				}
			}
		}
		return ids
	}
	c.net.SetAllFaults(memnet.Faults{DropRate: 0.02, DuplicateRate: 0.02, MaxDelay: 2})
	c.leader()

	const (
		clients  = 6
		duration = 4 * time.Second
	)
	var (
		clock   atomic.Int64
		mu      sync.Mutex
		history []porcupine.Operation
		acked   = map[string]bool{}
		written []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range clients {
		crng := rand.New(rand.NewPCG(seed, uint64(cl)+1))
		wg.Go(func() {
			for op := 0; ; op++ {
				select {
				case <-stop:
					return
				default:
				}
				ids := c.liveIDs()
				if len(ids) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				id := ids[crng.IntN(len(ids))]
				n := c.node(id)
				if n == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				if crng.IntN(10) < 6 {
					wid := fmt.Sprintf("c%d-%d", cl, op)
					call := clock.Add(1)
					_, err := n.Propose(ctx, put(wid, "reg", wid))
					ret := clock.Add(1)
					mu.Lock()
					written = append(written, wid)
					switch {
					case err == nil:
						acked[wid] = true
						history = append(history, porcupine.Operation{ClientId: cl, Input: regInput{true, wid}, Call: call, Return: ret})
					case definite(err):
					default:
						// Outcome unknown: it may take effect at any time later.
						history = append(history, porcupine.Operation{ClientId: cl, Input: regInput{true, wid}, Call: call, Return: math.MaxInt64})
					}
					mu.Unlock()
				} else {
					call := clock.Add(1)
					err := n.ReadBarrier(ctx)
					if err == nil {
						v := c.member(id).sm.Get("reg")
						ret := clock.Add(1)
						mu.Lock()
						history = append(history, porcupine.Operation{ClientId: cl, Input: regInput{false, ""}, Call: call, Output: v, Return: ret})
						mu.Unlock()
					}
				}
				cancel()
				if err := ctx.Err(); err != nil {
					time.Sleep(time.Millisecond) // back off after a timeout
				}
			}
		})
	}

	// Nemesis.
	deadline := time.Now().Add(duration)
	all := c.liveIDs()
	down := map[uint64]bool{}
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
		switch a := rng.IntN(10); {
		case a < 3: // kill the leader, or anybody
			var victim uint64
			for _, n := range c.live() {
				if n.Leadership().IsLeader {
					victim = n.ID()
				}
			}
			if victim == 0 || rng.IntN(3) == 0 {
				victim = all[rng.IntN(len(all))]
			}
			if !down[victim] && len(down) < 2 {
				c.crash(victim)
				down[victim] = true
			}
		case a < 5: // restart someone
			for id := range down {
				c.restart(id)
				delete(down, id)
				break
			}
			for _, id := range crashedAtFailpoint() {
				c.crash(id)
				c.restart(id)
			}
		case a < 6: // crash somebody at a step of the Ready loop
			fpMu.Lock()
			armed[all[rng.IntN(len(all))]] = failpoints[rng.IntN(len(failpoints))]
			fpMu.Unlock()
		case a < 8: // partition
			perm := rng.Perm(len(all))
			k := 1 + rng.IntN(2)
			var minority, majority []uint64
			for i, p := range perm {
				if i < k {
					minority = append(minority, all[p])
				} else {
					majority = append(majority, all[p])
				}
			}
			if rng.IntN(4) == 0 {
				c.net.BlockOneWay(minority[0], majority[0])
			} else {
				c.net.Partition(minority, majority)
			}
		default:
			c.net.Heal()
		}
	}
	close(stop)
	wg.Wait()

	c.net.Heal()
	c.net.SetAllFaults(memnet.Faults{})
	fpMu.Lock()
	clear(armed)
	fpMu.Unlock()
	for id := range down {
		c.restart(id)
	}
	for _, id := range crashedAtFailpoint() {
		c.crash(id)
		c.restart(id)
	}
	lead := c.leader()
	c.mustPropose(lead, "final", "other", "x")
	c.assertConverged()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged: the test exercised nothing")
	}
	for _, n := range c.live() {
		sm := c.member(n.ID()).sm
		for _, wid := range written {
			got := sm.Count(wid)
			if got > 1 || (acked[wid] && got != 1) {
				t.Fatalf("node %d applied %s %d times (acknowledged %v)", n.ID(), wid, got, acked[wid])
			}
		}
	}
	res := porcupine.CheckOperationsTimeout(registerModel, history, 20*time.Second)
	switch res {
	case porcupine.Illegal:
		t.Fatalf("register history of %d operations is not linearizable", len(history))
	case porcupine.Unknown:
		t.Logf("linearizability check timed out on %d operations", len(history))
	}
	t.Logf("seed %d: %d operations, %d acknowledged writes, network %+v", seed, len(history), len(acked), c.net.Stats())
}

// TestRandomizedMembership adds and removes members (the leader included)
// at random while clients write, then checks ids were never reused, every
// acknowledged write applied exactly once everywhere and all state
// machines agree. Replay with CONSENSUS_SEED=n.
func TestRandomizedMembership(t *testing.T) {
	seed := chaosSeed(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("randomized membership test failed: replay with CONSENSUS_SEED=%d", seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0xbeef))
	c := newCluster(t, 3, int64(seed), func(cfg *Config) {
		cfg.SnapshotEvery = 30
		cfg.SnapshotKeep = 5
		cfg.LagRetain = 20 // short absences catch up from the log, longer ones by snapshot
		cfg.StreamImages = func() bool { return seed%2 == 1 }
	})
	c.leader()

	var (
		mu      sync.Mutex
		acked   []string
		written []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range 3 {
		wg.Go(func() {
			for op := 0; ; op++ {
				select {
				case <-stop:
					return
				default:
				}
				ns := c.live()
				if len(ns) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				n := ns[op%len(ns)]
				wid := fmt.Sprintf("m%d-%d", cl, op)
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err := n.Propose(ctx, put(wid, "k", wid))
				cancel()
				mu.Lock()
				written = append(written, wid)
				if err == nil {
					acked = append(acked, wid)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}

	everUsed := map[uint64]bool{1: true, 2: true, 3: true}
	// Each add has its own addresses: an add whose outcome was unknown may
	// have committed, and its address is then in use.
	adds := 0
	for changes := 0; changes < 10; {
		lead := c.leader()
		members := lead.Members()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		if len(members) >= 5 || (len(members) > 3 && rng.IntN(2) == 0) {
			victim := members[rng.IntN(len(members))].ID
			if err = lead.RemoveMember(ctx, victim); err == nil {
				c.crash(victim)
			}
		} else {
			var id uint64
			adds++
			if id, err = lead.AddMember(ctx, fmt.Sprintf("new%d:7000", adds), fmt.Sprintf("new%d:8080", adds)); err == nil {
				if everUsed[id] {
					t.Fatalf("id %d handed out twice", id)
				}
				everUsed[id] = true
				c.join(id)
			}
		}
		cancel()
		switch {
		case err == nil:
			changes++
		case errors.Is(err, ErrConfChangeInProgress), errors.Is(err, ErrNotLeader), definite(err):
			time.Sleep(5 * time.Millisecond)
		default:
			t.Fatalf("membership change: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	lead := c.leader()
	c.mustPropose(lead, "final", "other", "x")
	c.assertConverged()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write acknowledged")
	}
	isAcked := map[string]bool{}
	for _, w := range acked {
		isAcked[w] = true
	}
	for _, n := range c.live() {
		sm := c.member(n.ID()).sm
		for _, w := range written {
			if got := sm.Count(w); got > 1 || (isAcked[w] && got != 1) {
				t.Fatalf("node %d applied %s %d times", n.ID(), w, got)
			}
		}
	}
	t.Logf("seed %d: %d writes acknowledged, members now %v", seed, len(acked), c.liveIDs())
}
