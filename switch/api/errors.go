package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

// errorBody is API.md's error format.
type errorBody struct {
	Error *txswitch.Error `json:"error"`
}

// writeError writes e as the response (status, JSON error body).
func writeError(fc *fasthttp.RequestCtx, e *txswitch.Error) {
	b, err := json.Marshal(errorBody{Error: e})
	if err != nil { // a struct of strings always marshals
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	fc.Response.Header.SetContentType("application/json")
	fc.SetStatusCode(e.Status)
	fc.SetBody(b)
}

// classify maps any error from the Service or AdminOps onto an API error.
// The bool is false for errors that are nobody's fault but ours (500).
func classify(err error, write bool) (*txswitch.Error, bool) {
	var e *txswitch.Error
	switch {
	case errors.As(err, &e):
		if e.Status < 400 || e.Status > 599 {
			return nil, false
		}
		return e, true
	case errors.Is(err, txswitch.ErrTimeout) && write:
		return outcomeUnknown(), true
	case errors.Is(err, context.DeadlineExceeded) && write:
		// The Service may have proposed the write before our deadline hit.
		return outcomeUnknown(), true
	case errors.Is(err, txswitch.ErrTimeout):
		// A read changed nothing: nothing is in doubt, it is asked again.
		return txswitch.NewError(503, txswitch.CodeLeaderUnavailable, "", "the leader did not confirm this read in time; retry"), true
	case errors.Is(err, txswitch.ErrRemoved):
		return txswitch.ErrorRemoved(), true
	case errors.Is(err, txswitch.ErrNoLeader):
		return txswitch.NewError(503, "no_leader", "", "no leader is known; retry shortly"), true
	case errors.Is(err, context.DeadlineExceeded):
		return txswitch.NewError(503, "unavailable", "", "the request timed out; retry shortly"), true
	case errors.Is(err, txswitch.ErrQueueFull), errors.Is(err, txswitch.ErrStopped),
		errors.Is(err, txswitch.ErrDropped), errors.Is(err, context.Canceled):
		return txswitch.NewError(503, "unavailable", "", "this node cannot serve the request right now: "+err.Error()), true
	}
	return nil, false
}

func outcomeUnknown() *txswitch.Error {
	return txswitch.NewError(503, "outcome_unknown", "",
		"the outcome is not known yet; retry with the same Idempotency-Key to get the result")
}

// writeErr answers rc with err, adding Retry-After (and the leader's
// address) to 503s and Retry-After to 429s, and logging unexpected errors.
func (s *Server) writeErr(rc *reqCtx, err error) {
	e, ok := classify(err, rc.route.write)
	if !ok {
		s.log.Error("request failed", zap.String("request_id", rc.requestID),
			zap.String("route", rc.route.pattern), zap.Error(err))
		e = txswitch.NewError(500, "internal", "", "internal error; request id "+rc.requestID)
	}
	s.setRetryHeaders(rc.fc, e.Status)
	if e.Status == 401 {
		rc.fc.Response.Header.Set("WWW-Authenticate", `Bearer realm="txswitch"`)
	}
	writeError(rc.fc, e)
}

func (s *Server) setRetryHeaders(fc *fasthttp.RequestCtx, status int) {
	switch status {
	case 503:
		if len(fc.Response.Header.Peek(hdrRetryAfter)) == 0 {
			fc.Response.Header.Set(hdrRetryAfter, "1")
		}
		if addr, ok := s.leaderHint(); ok {
			fc.Response.Header.Set(hdrLeader, addr)
		}
	case 429:
		if len(fc.Response.Header.Peek(hdrRetryAfter)) == 0 {
			fc.Response.Header.Set(hdrRetryAfter, "1")
		}
	}
}

// writeReply writes the Service's reply verbatim.
func (s *Server) writeReply(rc *reqCtx, r txswitch.Reply) {
	if r.Status < 200 || r.Status > 599 {
		s.log.Error("service returned an invalid reply status", zap.String("request_id", rc.requestID),
			zap.String("route", rc.route.pattern), zap.Int("status", r.Status))
		writeError(rc.fc, txswitch.NewError(500, "internal", "", "internal error; request id "+rc.requestID))
		return
	}
	s.setRetryHeaders(rc.fc, r.Status)
	rc.fc.Response.Header.SetContentType("application/json")
	rc.fc.SetStatusCode(r.Status)
	rc.fc.SetBody(r.Body)
}

// protocolError answers requests fasthttp could not parse.
func (s *Server) protocolError(fc *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(fc, txswitch.NewError(413, "body_too_large", "", "the request body is too large"))
	case errors.As(err, &small):
		writeError(fc, txswitch.NewError(431, "headers_too_large", "", "the request headers are too large"))
	case errors.As(err, &ne) && ne.Timeout():
		writeError(fc, txswitch.NewError(408, "request_timeout", "", "the request was not received in time"))
	default:
		writeError(fc, txswitch.NewError(400, "bad_request", "", "malformed HTTP request"))
	}
	s.metrics.observe("invalid", methodLabel(fc.Method()), fc.Response.StatusCode(), 0)
}
