package scenarios

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// arrivals computes the open-loop schedule: Poisson arrivals whose rate
// follows the shape, drawn from the scenario's seed so a rerun sends the
// same flows at the same offsets.
func arrivals(t Traffic, seed uint64) []arrival {
	rng := rand.New(rand.NewPCG(seed, 0x5ce9a710))
	sh := shapes[t.Shape]
	names := make([]string, 0, len(t.Mix))
	for n := range t.Mix {
		names = append(names, n)
	}
	sort.Strings(names) // map order must not leak into the schedule
	total := 0.0
	for _, n := range names {
		total += t.Mix[n]
	}
	dur := t.Duration.D()
	var out []arrival
	at := time.Duration(0)
	for {
		rate := t.Rate * sh.factor(float64(at)/float64(dur))
		rate = math.Max(rate, t.Rate*0.05)
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if at >= dur {
			return out
		}
		pick := rng.Float64() * total
		flow := names[len(names)-1]
		for _, n := range names {
			if pick < t.Mix[n] {
				flow = n
				break
			}
			pick -= t.Mix[n]
		}
		out = append(out, arrival{at: at, flow: flow, seed: rng.Uint64()})
	}
}

type arrival struct {
	at   time.Duration
	flow string
	seed uint64
}

// drive runs the schedule open-loop: each arrival starts its flow at its
// time whatever the earlier ones are doing, up to the concurrency bound;
// an arrival finding every slot busy is dropped and counted (the k6
// "dropped iteration"), so a slow switch shows as backlog, not as fewer
// requests asked.
func drive(ctx context.Context, e *env, cl *client, sched []arrival, concurrency int) {
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, a := range sched {
		wait := time.Until(e.start.Add(a.at))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			e.hist.drop()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			run := &FlowRun{ID: i + 1, Flow: a.flow, Start: time.Now()}
			f := &flowCtx{ctx: ctx, c: cl, rng: rand.New(rand.NewPCG(a.seed, uint64(i))), id: i + 1, name: a.flow, run: run}
			flows[a.flow].run(f)
			f.readBack()
			run.End = time.Now()
			e.hist.addRun(*run)
		})
	}
}
