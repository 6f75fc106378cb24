// Package api is txswitch's HTTP interface: the merchant API of
// ../shared/API.md, the provider notification endpoint, the cluster admin
// API, and the health, readiness and metrics endpoints, served with
// github.com/valyala/fasthttp.
//
// The package owns the HTTP layer only: routing over a fixed route table,
// authentication (merchant API keys through txswitch.Service.Authenticate,
// the admin bearer token, provider HMAC signatures), strict JSON decoding,
// the mapping of errors onto statuses, forwarding writes from followers to
// the leader, request ids and metrics. Validation of meaning (amounts,
// currencies, states) and idempotency are the Service's job; this package
// rejects only what cannot be decoded into the request types, so a
// malformed request never reaches the Service.
//
// Request pipeline, in order (each step answers and stops on failure):
//
//  1. route and method: unknown path 404 not_found, wrong method 405 with Allow;
//     admin routes answer 404 while Options.AdminToken is empty;
//  2. authentication by bearer (merchant key, admin token) → 401
//     unauthorized, so that a caller without a valid key learns nothing
//     else about its request;
//  3. a path id no resource can have (over 128 bytes, spaces, control
//     characters) is 404, a malformed member id 400; a body larger than
//     the route's limit 413 body_too_large; then a provider notification's
//     X-Provider-Signature (an HMAC of the body) → 401 unauthorized;
//  4. Idempotency-Key format (writes only) → 400 invalid_idempotency_key;
//  5. Content-Type and strict JSON decoding → 415 / 400;
//  6. writes (and GET /v1/orders/{id}/methods) on a follower are forwarded
//     to the leader (see below);
//     everything else calls the Service and writes its Reply verbatim.
//
// Forwarding: every POST, PUT and DELETE must run on the leader, and so must
// GET /v1/orders/{id}/methods: only the leader calls providers, so only its
// breakers know which providers are down right now (and only it records the
// offer on the timeline). A follower
// validates the request as above (so garbage never travels), then proxies the
// raw body and the headers that matter to the leader's API address, marking
// it with X-Txswitch-Forwarded. A forwarded request that reaches a node that
// is not the leader is answered 503 not_leader rather than forwarded again,
// so leadership churn cannot make requests loop. A transport failure before
// the leader can have received the request (dial failure, no free
// connection) is 503 leader_unreachable; any later failure is 503
// outcome_unknown: the write may have happened, and the caller must retry
// with the same Idempotency-Key. GETs are always served locally: the Service
// makes them linearizable.
//
// Provider notifications are authenticated with X-Provider-Signature, the hex
// HMAC-SHA256 of the raw body keyed with Options.ProviderSecrets[provider].
// A provider without a configured secret is refused (401): there is no
// unauthenticated fallback, not even for loopback, because a forwarded
// notification reaches the leader from a follower's address and a loopback
// exception would either break forwarding or trust a spoofable header.
package api
