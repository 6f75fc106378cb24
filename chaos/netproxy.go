package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
)

// Network is the raft network of a process cluster: one in-process
// toxiproxy proxy per ordered pair of members (a link), so a fault can cut
// or slow what one node sends without touching what the others send to
// each other. The transport's connections are one-way (each node dials
// each peer for its own messages), so a link's "upstream" stream carries
// exactly the messages from one node to another.
//
// Every link starts with a counting toxic, so a fault can say how many
// bytes were offered to the links it acted on (a cut that no message
// crossed did not test anything).
type Network struct {
	srv *toxiproxy.ApiServer

	mu    sync.Mutex
	links map[[2]int]*link
}

type link struct {
	proxy   *toxiproxy.Proxy
	counter string
	bytes   *atomic.Int64
}

// counters is where counting toxics add: toxiproxy builds toxics from
// JSON, so a toxic finds its counter by name.
var (
	counters   sync.Map // name -> *atomic.Int64
	counterSeq atomic.Uint64
)

// countToxic passes data through and counts its bytes.
type countToxic struct {
	Counter string `json:"counter"`
}

func (t *countToxic) Pipe(stub *toxics.ToxicStub) {
	var n *atomic.Int64
	if v, ok := counters.Load(t.Counter); ok {
		n = v.(*atomic.Int64)
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if n != nil {
				n.Add(int64(len(c.Data)))
			}
			stub.Output <- c
		}
	}
}

func init() {
	toxics.Register("txswitch_count", new(countToxic))
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()), links: map[[2]int]*link{}}
}

// AddLink starts a proxy on a free loopback port carrying from's messages
// to upstream (to's raft listen address) and returns its address.
func (n *Network) AddLink(from, to int, upstream string) (string, error) {
	name := fmt.Sprintf("n%d-n%d", from+1, to+1)
	p := toxiproxy.NewProxy(n.srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return "", fmt.Errorf("start link %s: %w", name, err)
	}
	counter := name + "#" + strconv.FormatUint(counterSeq.Add(1), 10)
	bytes := new(atomic.Int64)
	counters.Store(counter, bytes)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(
		`{"name":"count","type":"txswitch_count","stream":"upstream","attributes":{"counter":"` + counter + `"}}`)); err != nil {
		p.Stop()
		counters.Delete(counter)
		return "", fmt.Errorf("count on link %s: %w", name, err)
	}
	n.mu.Lock()
	n.links[[2]int{from, to}] = &link{proxy: p, counter: counter, bytes: bytes}
	n.mu.Unlock()
	return p.Listen, nil
}

// Links returns the links touching slot: what it sends (out) and what it
// receives (in).
func (n *Network) Links(slot int, out, in bool) [][2]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ks [][2]int
	for k := range n.links {
		if (out && k[0] == slot) || (in && k[1] == slot) {
			ks = append(ks, k)
		}
	}
	return ks
}

// Bytes is how many bytes were offered to the links so far.
func (n *Network) Bytes(ks [][2]int) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var sum int64
	for _, k := range ks {
		if l := n.links[k]; l != nil {
			sum += l.bytes.Load()
		}
	}
	return sum
}

// AddToxic adds a toxic (toxiproxy's JSON: type, stream, attributes) under
// name to each link.
func (n *Network) AddToxic(ks [][2]int, name, typ, attributes string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range ks {
		l := n.links[k]
		if l == nil {
			return fmt.Errorf("no link n%d->n%d", k[0]+1, k[1]+1)
		}
		js := `{"name":"` + name + `","type":"` + typ + `","stream":"upstream","attributes":` + attributes + `}`
		if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return fmt.Errorf("toxic %s on link %s: %w", typ, l.proxy.Name, err)
		}
	}
	return nil
}

// RemoveToxic removes the toxic called name from each link that has it.
func (n *Network) RemoveToxic(ks [][2]int, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range ks {
		if l := n.links[k]; l != nil && l.proxy.Toxics.GetToxic(name) != nil {
			// Removal only fails for an unknown name, checked above.
			_ = l.proxy.Toxics.RemoveToxic(context.Background(), name)
		}
	}
}

// Close stops every link.
func (n *Network) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, l := range n.links {
		l.proxy.Stop()
		counters.Delete(l.counter)
		delete(n.links, k)
	}
}
