package api

import (
	"bytes"
	"reflect"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"

	txswitch "github.com/txswitch/txswitch/switch"
)

// authKind is how a route authenticates its caller.
type authKind uint8

const (
	authNone     authKind = iota // health, readiness, metrics
	authMerchant                 // Authorization: Bearer <merchant api key>
	authAdmin                    // Authorization: Bearer <Options.AdminToken>
	authProvider                 // X-Provider-Signature: hex HMAC-SHA256(body)
)

// bodyKind is what a route accepts as a request body.
type bodyKind uint8

const (
	bodyIgnored  bodyKind = iota // GET: a body is ignored
	bodyEmpty                    // no fields: empty or exactly {}
	bodyOptional                 // every field optional: empty means {}
	bodyRequired                 // a JSON object is required
)

// route is one (method, path pattern) of the API.
type route struct {
	method  string
	pattern string // "/v1/orders/{id}"; also the metrics label
	auth    authKind
	// write routes run on the leader: a follower forwards them.
	write bool
	// leaderRead routes are reads only the leader can answer (it alone
	// calls providers, so only its breakers know which are down): a
	// follower forwards them too, without the write-only checks.
	leaderRead bool
	body       bodyKind
	// adminBody routes take the larger Options.MaxAdminBodyBytes limit.
	adminBody bool
	// reqType is the Go type of the JSON body (nil: none); the OpenAPI test
	// checks the document's schema against it.
	reqType reflect.Type
	decode  func(body []byte) (any, error)
	call    func(s *Server, rc *reqCtx, body any) (txswitch.Reply, error)
	// raw routes write their own response (health, metrics).
	raw func(s *Server, ctx *fasthttp.RequestCtx)
	// leaderMoved, on a route that moves the leadership, answers a
	// forwarded request from the decoded body once this node sees the
	// leader it asked for: the forwarder would otherwise take that change,
	// the request's own effect, for the replacement of a frozen leader.
	leaderMoved func(body any, now txswitch.Leadership) (txswitch.Reply, bool)
}

// isAdmin reports whether the route belongs to the admin API, which is
// disabled (404) while no admin token is configured.
func (r *route) isAdmin() bool { return strings.HasPrefix(r.pattern, "/v1/admin/") }

// withBody attaches a JSON body of type T to r.
func withBody[T any](r route, call func(s *Server, rc *reqCtx, req T) (txswitch.Reply, error)) route {
	r.reqType = reflect.TypeFor[T]()
	r.decode = func(b []byte) (any, error) {
		var v T
		if len(b) == 0 && r.body == bodyOptional {
			return v, nil
		}
		// A PSP's notification is what the PSP says, NULs included (the
		// exporter drops them for PostgreSQL); what merchants and
		// operators send may not hold them.
		if err := decodeStrictWith(b, &v, r.auth == authProvider); err != nil {
			return nil, err
		}
		return v, nil
	}
	r.call = func(s *Server, rc *reqCtx, v any) (txswitch.Reply, error) { return call(s, rc, v.(T)) }
	return r
}

// noBody attaches a handler without a request body to r.
func noBody(r route, call func(s *Server, rc *reqCtx) (txswitch.Reply, error)) route {
	r.call = func(s *Server, rc *reqCtx, _ any) (txswitch.Reply, error) { return call(s, rc) }
	return r
}

// routeTable is the whole API. Patterns hold at most one parameter, {id}
// (or {provider}); the router matches fixed segment shapes, so a parameter
// never contains a slash.
func routeTable() []route {
	get := func(p string, a authKind) route { return route{method: "GET", pattern: p, auth: a} }
	leaderGet := func(p string, a authKind) route { r := get(p, a); r.leaderRead = true; return r }
	write := func(m, p string, a authKind, b bodyKind) route {
		return route{method: m, pattern: p, auth: a, write: true, body: b}
	}
	return []route{
		withBody(write("POST", "/v1/orders", authMerchant, bodyRequired), (*Server).createOrder),
		noBody(get("/v1/orders/{id}", authMerchant), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.GetOrder(rc.ctx, rc.caller, rc.id)
		}),
		noBody(leaderGet("/v1/orders/{id}/methods", authMerchant), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.Methods(rc.ctx, rc.caller, rc.id)
		}),
		noBody(get("/v1/orders/{id}/timeline", authMerchant), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.Timeline(rc.ctx, rc.caller, rc.id)
		}),
		noBody(get("/v1/orders/{id}/explain", authMerchant), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.Explain(rc.ctx, rc.caller, rc.id)
		}),
		withBody(write("POST", "/v1/orders/{id}/payments", authMerchant, bodyRequired), (*Server).createPayment),
		noBody(get("/v1/payments/{id}", authMerchant), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.GetPayment(rc.ctx, rc.caller, rc.id)
		}),
		withBody(write("POST", "/v1/payments/{id}/captures", authMerchant, bodyOptional), (*Server).capture),
		withBody(write("POST", "/v1/payments/{id}/refunds", authMerchant, bodyOptional), (*Server).refund),
		noBody(write("POST", "/v1/payments/{id}/cancel", authMerchant, bodyEmpty), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.Cancel(rc.ctx, rc.caller, rc.id)
		}),
		withBody(write("POST", "/v1/notifications/{provider}", authProvider, bodyRequired), (*Server).notify),

		noBody(get("/v1/admin/config", authAdmin), func(s *Server, rc *reqCtx) (txswitch.Reply, error) {
			return s.svc.GetConfig(rc.ctx)
		}),
		adminSized(withBody(write("PUT", "/v1/admin/config", authAdmin, bodyRequired), (*Server).putConfig)),
		withBody(write("POST", "/v1/admin/payments/{id}/review", authAdmin, bodyRequired), (*Server).review),
		withBody(write("POST", "/v1/admin/payments/{id}/resolve", authAdmin, bodyRequired), (*Server).resolve),
		noBody(get("/v1/admin/status", authAdmin), (*Server).adminStatus),
		noBody(get("/v1/admin/intents", authAdmin), (*Server).listIntents),
		noBody(get("/v1/admin/reviews", authAdmin), (*Server).listReviews),
		withBody(write("POST", "/v1/admin/members", authAdmin, bodyRequired), (*Server).addMember),
		noBody(write("DELETE", "/v1/admin/members/{id}", authAdmin, bodyEmpty), (*Server).removeMember),
		movesLeader(withBody(write("POST", "/v1/admin/leader", authAdmin, bodyRequired), (*Server).transferLeader), transferDone),

		{method: "GET", pattern: "/healthz", raw: (*Server).healthz},
		{method: "GET", pattern: "/readyz", raw: (*Server).readyz},
		{method: "GET", pattern: "/metrics", raw: (*Server).metricsHandler},
	}
}

func adminSized(r route) route { r.adminBody = true; return r }

func movesLeader(r route, done func(body any, now txswitch.Leadership) (txswitch.Reply, bool)) route {
	r.leaderMoved = done
	return r
}

// maxSegments bounds the path segments the router looks at; longer paths
// cannot match any route.
const maxSegments = 8

// pathPattern is one path shape with the routes of each method.
type pathPattern struct {
	pattern  string
	segs     []string // literal segments; "" marks the parameter
	byMethod map[string]*route
	allow    string // the Allow header of a 405
}

// router matches a request path against the fixed path shapes without
// regular expressions: shapes are grouped by segment count and compared
// segment by segment.
type router struct {
	bySegs map[int][]*pathPattern
}

func newRouter(routes []route) *router {
	r := &router{bySegs: map[int][]*pathPattern{}}
	byPattern := map[string]*pathPattern{}
	for i := range routes {
		rt := &routes[i]
		pp, ok := byPattern[rt.pattern]
		if !ok {
			pp = &pathPattern{pattern: rt.pattern, byMethod: map[string]*route{}}
			for _, seg := range strings.Split(strings.TrimPrefix(rt.pattern, "/"), "/") {
				if strings.HasPrefix(seg, "{") {
					seg = ""
				}
				pp.segs = append(pp.segs, seg)
			}
			byPattern[rt.pattern] = pp
			r.bySegs[len(pp.segs)] = append(r.bySegs[len(pp.segs)], pp)
		}
		if _, dup := pp.byMethod[rt.method]; dup {
			panic("api: duplicate route " + rt.method + " " + rt.pattern)
		}
		pp.byMethod[rt.method] = rt
	}
	for _, pp := range byPattern {
		methods := make([]string, 0, len(pp.byMethod))
		for m := range pp.byMethod {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		pp.allow = strings.Join(methods, ", ")
	}
	return r
}

// match finds the path shape of path and its parameter (if any).
func (r *router) match(path []byte) (*pathPattern, string) {
	if len(path) == 0 || path[0] != '/' {
		return nil, ""
	}
	var segs [maxSegments][]byte
	n := 0
	rest := path[1:]
	for {
		if n == maxSegments {
			return nil, ""
		}
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			segs[n] = rest
			n++
			break
		}
		segs[n] = rest[:i]
		n++
		rest = rest[i+1:]
	}
next:
	for _, pp := range r.bySegs[n] {
		param := -1
		for i, lit := range pp.segs {
			if lit == "" {
				if len(segs[i]) == 0 {
					continue next
				}
				param = i
				continue
			}
			if string(segs[i]) != lit {
				continue next
			}
		}
		if param < 0 {
			return pp, ""
		}
		return pp, string(segs[param])
	}
	return nil, ""
}
