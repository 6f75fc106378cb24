package api

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// Connections past Options.Concurrency get the contract's 503 (the JSON
// error, Retry-After, the leader's address when known) from limitListener
// instead of fasthttp's own, which is plain text without Retry-After and is
// what a gateway would get exactly when it most needs to know to back off.
// fasthttp serves each connection on one worker for the connection's life,
// so its Concurrency is a bound on connections, and so is this one; its own
// limit is set above ours (fasthttpSlack) so that a worker not yet back in
// its pool after a close never makes it answer first.
const (
	// maxRejecting bounds the connections being answered 503 at once; past
	// it a connection is closed unanswered (the client sees a reset and
	// retries as for any network error).
	maxRejecting = 64
	// rejectDeadline bounds writing the 503 and draining the request.
	rejectDeadline = time.Second
	// rejectDrainBytes bounds what is read of a rejected request: closing a
	// socket with unread bytes sends a reset, which can destroy the 503
	// before the client reads it.
	rejectDrainBytes = 64 << 10
)

func fasthttpSlack(limit int) int { return limit + limit/8 + 16 }

// limitListener counts the connections it hands out and answers the ones
// past max itself.
type limitListener struct {
	net.Listener
	s         *Server
	max       int64
	active    atomic.Int64
	rejecting atomic.Int64
}

func (s *Server) limit(ln net.Listener) *limitListener {
	return &limitListener{Listener: ln, s: s, max: int64(s.opts.Concurrency)}
}

// Accept returns the next connection within the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) <= l.max {
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.active.Add(-1)
		l.s.metrics.connsRejected.Inc()
		if l.rejecting.Add(1) > maxRejecting {
			l.rejecting.Add(-1)
			_ = c.Close()
			continue
		}
		go func() {
			defer l.rejecting.Add(-1)
			l.reject(c)
		}()
	}
}

// reject answers c 503 and closes it: the response first (HTTP/1.1 lets a
// server answer before reading the request), then the write side, then
// what the client sent, so that the close is a FIN and not a reset.
func (l *limitListener) reject(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(rejectDeadline))
	if _, err := c.Write(l.s.overloadedResponse(l.max)); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, rejectDrainBytes))
}

// overloadedResponse is the raw HTTP response for a connection past the
// limit, in the API's error format.
func (s *Server) overloadedResponse(max int64) []byte {
	body := `{"error":{"code":"overloaded","message":"this node is serving its maximum of ` +
		strconv.FormatInt(max, 10) + ` connections; retry shortly, or on another node"}}`
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"...)
	b = append(b, hdrRetryAfter+": 1\r\n"...)
	if addr, ok := s.leaderHint(); ok && isToken([]byte(addr)) {
		b = append(b, hdrLeader+": "...)
		b = append(b, addr...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Connection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.active.Add(-1)
	}
	return c.Conn.Close()
}
