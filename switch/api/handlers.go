package api

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	txswitch "github.com/txswitch/txswitch/switch"
)

// AddMemberRequest is the body of POST /v1/admin/members.
type AddMemberRequest struct {
	RaftAddr string `json:"raft_addr"` // host:port of the new node's raft transport
	APIAddr  string `json:"api_addr"`  // host:port of the new node's HTTP API
	// Versions are the cluster versions the new node's binary runs. A
	// node joining with --join sends them, and a member refuses (409
	// cluster_version_not_supported) a binary that cannot run the
	// cluster's version: added, it would stop at once and stay a voter
	// that never answers. Absent: a binary of cluster version 12 or
	// older, which did not send them.
	Versions *txswitch.VersionRange `json:"versions,omitempty"`
}

// AddMemberResponse is the reply of POST /v1/admin/members.
type AddMemberResponse struct {
	ID uint64 `json:"id"`
}

// RemoveMemberResponse is the reply of DELETE /v1/admin/members/{id}.
type RemoveMemberResponse struct {
	ID      uint64 `json:"id"`
	Removed bool   `json:"removed"`
}

// TransferLeaderRequest is the body of POST /v1/admin/leader; it is also
// the reply.
type TransferLeaderRequest struct {
	To uint64 `json:"to"`
}

func (s *Server) createOrder(rc *reqCtx, req txswitch.CreateOrderRequest) (txswitch.Reply, error) {
	return s.svc.CreateOrder(rc.ctx, rc.caller, req)
}

func (s *Server) createPayment(rc *reqCtx, req txswitch.CreatePaymentRequest) (txswitch.Reply, error) {
	return s.svc.CreatePayment(rc.ctx, rc.caller, rc.id, req)
}

func (s *Server) capture(rc *reqCtx, req txswitch.CaptureRequest) (txswitch.Reply, error) {
	return s.svc.Capture(rc.ctx, rc.caller, rc.id, req)
}

func (s *Server) refund(rc *reqCtx, req txswitch.RefundRequest) (txswitch.Reply, error) {
	return s.svc.Refund(rc.ctx, rc.caller, rc.id, req)
}

func (s *Server) notify(rc *reqCtx, n txswitch.ProviderNotification) (txswitch.Reply, error) {
	return s.svc.Notify(rc.ctx, rc.id, n)
}

func (s *Server) putConfig(rc *reqCtx, cfg txswitch.RoutingConfig) (txswitch.Reply, error) {
	return s.svc.PutConfig(rc.ctx, cfg)
}

func (s *Server) review(rc *reqCtx, req txswitch.ReviewRequest) (txswitch.Reply, error) {
	return s.svc.ReviewPayment(rc.ctx, rc.id, req)
}

func (s *Server) resolve(rc *reqCtx, req txswitch.ResolveRequest) (txswitch.Reply, error) {
	return s.svc.ResolvePayment(rc.ctx, rc.id, req)
}

func (s *Server) adminStatus(rc *reqCtx) (txswitch.Reply, error) {
	st, err := s.opts.Admin.Status(rc.ctx)
	if err != nil {
		return txswitch.Reply{}, err
	}
	return jsonReply(200, st)
}

// listQuery is the query of a paged admin listing.
type listQuery struct {
	state, after string
	limit        int
}

// parseListQuery reads limit, after and, when withState, state. Any other
// query parameter is refused, as unknown JSON fields are: a typo (stat=)
// would otherwise list everything.
func parseListQuery(rc *reqCtx, withState bool) (listQuery, error) {
	var q listQuery
	accepted := "limit and after are accepted"
	if withState {
		accepted = "state, limit and after are accepted"
	}
	for k, v := range rc.fc.QueryArgs().All() {
		switch string(k) {
		case "state":
			if !withState {
				return q, txswitch.NewError(txswitch.KindInvalid, txswitch.CodeInvalidQuery, "state", "unknown query parameter \"state\" ("+accepted+")")
			}
			q.state = string(v)
		case "after":
			q.after = string(v)
		case "limit":
			n, err := strconv.Atoi(string(v))
			if err != nil || n <= 0 {
				return q, txswitch.NewError(txswitch.KindInvalid, txswitch.CodeInvalidQuery, "limit", "limit must be a positive whole number")
			}
			q.limit = n
		default:
			return q, txswitch.NewError(txswitch.KindInvalid, txswitch.CodeInvalidQuery, string(k),
				"unknown query parameter "+strconv.Quote(string(k))+" ("+accepted+")")
		}
	}
	return q, nil
}

// listIntents serves GET /v1/admin/intents?state=&limit=&after=.
func (s *Server) listIntents(rc *reqCtx) (txswitch.Reply, error) {
	q, err := parseListQuery(rc, true)
	if err != nil {
		return txswitch.Reply{}, err
	}
	return s.svc.ListIntents(rc.ctx, q.state, q.after, q.limit)
}

// listReviews serves GET /v1/admin/reviews?limit=&after=.
func (s *Server) listReviews(rc *reqCtx) (txswitch.Reply, error) {
	q, err := parseListQuery(rc, false)
	if err != nil {
		return txswitch.Reply{}, err
	}
	return s.svc.ListReviews(rc.ctx, q.after, q.limit)
}

func (s *Server) addMember(rc *reqCtx, req AddMemberRequest) (txswitch.Reply, error) {
	for _, f := range []struct{ name, v string }{{"raft_addr", req.RaftAddr}, {"api_addr", req.APIAddr}} {
		if _, _, err := net.SplitHostPort(f.v); err != nil || f.v == "" {
			return txswitch.Reply{}, txswitch.NewError(txswitch.KindInvalid, "invalid_field", f.name,
				f.name+" must be host:port")
		}
	}
	if v := req.Versions; v != nil && (v.Min < 1 || v.Max < v.Min) {
		return txswitch.Reply{}, txswitch.NewError(txswitch.KindInvalid, "invalid_field", "versions",
			"versions must be {\"min\": N, \"max\": M} with 1 <= N <= M")
	}
	id, err := s.opts.Admin.AddMember(rc.ctx, req.RaftAddr, req.APIAddr, req.Versions)
	if err != nil {
		return txswitch.Reply{}, err
	}
	return jsonReply(201, AddMemberResponse{ID: id})
}

func (s *Server) removeMember(rc *reqCtx) (txswitch.Reply, error) {
	id, err := memberID(rc.id)
	if err != nil {
		return txswitch.Reply{}, err
	}
	if err := s.opts.Admin.RemoveMember(rc.ctx, id); err != nil {
		return txswitch.Reply{}, err
	}
	return jsonReply(200, RemoveMemberResponse{ID: id, Removed: true})
}

func (s *Server) transferLeader(rc *reqCtx, req TransferLeaderRequest) (txswitch.Reply, error) {
	if req.To == 0 {
		return txswitch.Reply{}, txswitch.NewError(txswitch.KindInvalid, "invalid_field", "to", "to must be a member id")
	}
	if err := s.opts.Admin.TransferLeader(rc.ctx, req.To); err != nil {
		return txswitch.Reply{}, err
	}
	return jsonReply(200, req)
}

// transferDone is the answer to a forwarded leader transfer once this node
// sees the member it names lead: the leader's own answer (transferLeader).
func transferDone(body any, now txswitch.Leadership) (txswitch.Reply, bool) {
	req, ok := body.(TransferLeaderRequest)
	if !ok || req.To == 0 || now.LeaderID != req.To {
		return txswitch.Reply{}, false
	}
	r, err := jsonReply(200, req)
	return r, err == nil
}

func memberID(p string) (uint64, error) {
	id, err := strconv.ParseUint(p, 10, 64)
	if err != nil || id == 0 {
		return 0, txswitch.NewError(txswitch.KindInvalid, "invalid_field", "id", "the member id must be a positive integer")
	}
	return id, nil
}

func jsonReply(status int, v any) (txswitch.Reply, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return txswitch.Reply{}, fmt.Errorf("encode %T reply: %w", v, err)
	}
	return txswitch.Reply{Status: status, Body: b}, nil
}
