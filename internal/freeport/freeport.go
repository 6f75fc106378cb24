// Package freeport hands out loopback TCP addresses for servers that must be
// told their port before they bind it: a cluster's bootstrap list names every
// member's address before any member starts, and a child process (PostgreSQL,
// a node binary) binds the port itself.
//
// The usual trick, listening on port 0 and closing, returns a port from the
// kernel's ephemeral range. Every outbound connection on the machine draws its
// local port from that same range, so between the close and the real bind
// another connection can take the port ("address already in use", seen in CI).
// This package picks ports below the ephemeral range instead, where only an
// explicit bind can land, checks each one is free, and never hands the same
// port out twice within a process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Below Linux's default ephemeral range (32768–60999) and above the ports
// services usually claim.
const (
	defaultLow  = 20000
	defaultHigh = 32767
	attempts    = 200
)

var (
	mu     sync.Mutex
	issued = map[int]bool{}
	// window is a variable so a test can narrow it.
	window = portWindow
)

// Addr returns "127.0.0.1:PORT" for a port that was free when checked and
// that this process has not handed out before.
func Addr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// Port is Addr's port number.
func Port() (int, error) {
	low, high := window()
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < attempts; i++ {
		p := low + rand.IntN(high-low+1)
		if issued[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		issued[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d after %d attempts", low, high, attempts)
}

// portWindow is the range below the ephemeral one; when the machine's
// ephemeral range starts too low to leave room, the window moves above it.
func portWindow() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultLow, defaultHigh
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultLow, defaultHigh
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return defaultLow, defaultHigh
	}
	switch {
	case lo-1 >= defaultLow+1000:
		return defaultLow, min(defaultHigh, lo-1)
	case hi+1 <= 65535-1000:
		return hi + 1, 65535
	default:
		return defaultLow, defaultHigh
	}
}
