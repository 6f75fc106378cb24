package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreDistinctBindableAndOutsideTheEphemeralRange(t *testing.T) {
	low, high := portWindow()
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < low || p > high {
			t.Fatalf("port %d outside the window %d-%d", p, low, high)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		ln.Close()
	}
}

func TestABoundPortIsNeverHandedOut(t *testing.T) {
	// Narrow the window to 40 ports and hold 20 of them: without the bind
	// check, 200 picks would land on a held port almost surely.
	low, _ := portWindow()
	window = func() (int, int) { return low, low + 39 }
	defer func() { window = portWindow }()
	held := map[int]net.Listener{}
	for i := 0; i < 20; i++ {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatal(err)
		}
		held[p] = ln
	}
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		mu.Lock()
		clear(issued) // re-allow the free ones, so the picks keep coming
		mu.Unlock()
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := held[p]; ok {
			t.Fatalf("port %d is bound but was handed out", p)
		}
	}
}
