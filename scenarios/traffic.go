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
//
// The rate changes over time, so the arrivals are drawn by thinning
// (Lewis and Shedler): candidates at the shape's peak rate, each kept
// with probability rate(t)/peak. Drawing each gap at the rate of the
// moment it starts would let one gap drawn in a lull (at the 5 % floor,
// a mean of 1 s at 20/s) jump over the full-rate stretch after it: in a
// third of the seeds the "lull" shape sent nothing in the second after
// its lull, which central/{fault}/idle counts on while the database is
// still away. A constant shape keeps every candidate and draws exactly
// what it drew before.
func arrivals(t Traffic, seed uint64) []arrival {
	rng := rand.New(rand.NewPCG(seed, 0x5ce9a710))
	sh := shapes[t.Shape]
	rateAt := func(frac float64) float64 { return math.Max(t.Rate*sh.factor(frac), t.Rate*0.05) }
	peak := 0.0
	for i := 0; i <= peakSamples; i++ {
		peak = math.Max(peak, rateAt(float64(i)/peakSamples))
	}
	if !(peak > 0) {
		return nil // no rate (Parse refuses one): no arrivals, not an endless loop
	}
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
		at += time.Duration(rng.ExpFloat64() / peak * float64(time.Second))
		if at >= dur {
			return out
		}
		if rate := rateAt(float64(at) / float64(dur)); rate < peak && rng.Float64()*peak >= rate {
			continue // thinned: the shape asks for fewer arrivals here
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

// peakSamples is how finely arrivals looks for a shape's peak rate. A
// smooth shape's true peak may fall between two samples; where its rate
// is above the sampled peak every candidate is kept, a shortfall of well
// under 1 % there.
const peakSamples = 1000

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
			defer e.recovered("flow " + a.flow)
			run := &FlowRun{ID: i + 1, Flow: a.flow, Start: time.Now()}
			f := &flowCtx{ctx: ctx, c: cl, rng: rand.New(rand.NewPCG(a.seed, uint64(i))), id: i + 1, name: a.flow, run: run}
			flows[a.flow].run(f)
			f.readBack()
			run.End = time.Now()
			e.hist.addRun(*run)
		})
	}
}
