// Package sim is a simulated payment service provider (PSP) serving the PSP
// wire protocol over real HTTP, for tests, scenarios and the
// `txswitch sim-provider` subcommand. It behaves like a real PSP where the
// switch's correctness depends on it (idempotency, money rules, asynchronous
// completion) and misbehaves on command (latency, errors, outages, charges
// whose answer never arrives, garbled answers, duplicated notifications).
// Its ledger records truthfully what it did, so tests can prove "never
// charged twice" and "money adds up" from the provider's side.
//
// Usage:
//
//	s := sim.New(sim.Config{Seed: 1})
//	addr, err := s.Start("127.0.0.1:0")
//	defer s.Close()
//	s.SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"*": {ErrorRate: 0.2}}})
//	... s.Ledger(), s.Totals("pay_1")
//
// # Wire protocol
//
// Paths, headers and limits are constants of package wire, shared with the
// client adapter in package providers.
//
// Money-moving calls:
//
//	POST /v1/payments/{authorize|capture|refund|cancel}
//	Idempotency-Key: <key>                 (1..255 printable ASCII)
//	Content-Type: application/json
//	body: txswitch.ProviderRequest (JSON, at most 64 KiB)
//
//	200 txswitch.ProviderResult            outcome approved | declined | pending
//	400 {"error":{"code":"invalid_request",...}}      nothing processed
//	413 {"error":{"code":"body_too_large",...}}       nothing processed
//	422 {"error":{"code":"idempotency_key_reused",...}} the key was used for a
//	    different request; that earlier request may well have moved money
//	503 + X-Processed: false {"error":{"code":"unavailable"|"ledger_full"}}
//	    refused before processing: nothing happened for THIS request
//
// The key in the header is authoritative; a body key or op that differs
// from the header or the path is a 400. The same key with the same body
// returns the stored result - never a second charge - reflecting later
// changes (a pending authorization the bank has since completed answers
// approved or declined). Declines are answered 200 with outcome "declined";
// the client also accepts a decline body on a 4xx, as some real PSPs send.
//
// Status inquiries:
//
//	GET /v1/payments/status/{url-escaped idempotency key}
//	200 txswitch.ProviderResult of that key, or outcome "not_found" if no
//	    request was ever processed under it
//
// Asynchronous (redirect) methods: an authorization answers pending with a
// redirect_url (GET /redirect/{ref} is a placeholder bank page). After the
// configured delay the simulated bank completes it - approved, or declined
// when a decline rule matched at authorization time - and the PSP POSTs a
// txswitch.ProviderNotification to the request's notify_url, retrying
// (bounded, with backoff) until a 2xx. Copies with the same notification_id
// are sent on purpose when configured: the receiver must deduplicate.
//
// Money rules, enforced like a real PSP and answered as declines:
// capture <= authorized minus captured (amount_exceeds_authorization),
// refund <= captured minus refunded (amount_exceeds_captured), cancel only
// while nothing is captured (already_captured), nothing on a declined or
// still pending authorization (authorization_not_approved) or a cancelled
// one (authorization_cancelled), same currency (currency_mismatch).
// A cancel of a still pending authorization ends it before the bank can
// complete it; with "pending_only": true (the switch's expiry) a cancel of
// one that is no longer pending is refused (not_pending) instead of voiding
// it.
// A capture, refund or cancel names its authorization by provider_ref (it
// must belong to payment_id); without one, the only approved authorization
// of payment_id is used (unknown_authorization when there is none or more
// than one). Authorize with "capture": true captures at once.
//
// Decline rules: by default amounts ending in 05 are declined
// "do_not_honor" and amounts ending in 51 "insufficient_funds"
// (BuiltinDeclineRules; Behaviour.DisableBuiltinDeclines turns them off,
// Behaviour.DeclineRules adds more).
//
// # Control and inspection
//
//	GET    /control/behaviour   current Behaviour (JSON)
//	POST   /control/behaviour   replace it (strict JSON: unknown fields are a 400)
//	DELETE /control/behaviour   back to a well-behaved PSP (the "undo"); the ledger stays
//	GET    /control/stats       Stats
//	GET    /ledger[?payment_id=]          {"entries":[LedgerEntry...]}
//	GET    /ledger/totals?payment_id=     Totals
//
// Behaviour is set per payment method with "*" as the fallback: latency
// (fixed, uniform or normal), an error rate (503 X-Processed: false before
// processing), unavailability, "charge then time out" (process and record,
// then stall until the client gives up), malformed answers (process, then
// answer garbage) and asynchronous completion; Ops restricts latency and
// faults to some operations (status inquiries are only affected when
// listed). Latency is spent before processing: a client that gives up
// during it leaves nothing booked (its status inquiry answers not_found),
// whereas "charge then time out" books first. A server-wide Outage either answers 503 X-Processed: false
// ("unavailable") or stops listening so dials are refused ("refuse"), for
// ForMillis; over HTTP a refuse outage must have ForMillis, since the control
// endpoint goes down with the listener.
//
// # Bounds
//
// Request bodies 64 KiB (413 past it), control bodies 64 KiB, the ledger
// Config.MaxLedger entries (then new keys get 503 ledger_full; nothing is
// ever evicted, so the ledger stays truthful), the notification queue
// Config.NotifyQueue (then notifications are dropped, logged and counted;
// status inquiries still tell the outcome), NotifyAttempts deliveries per
// copy, every behaviour duration at most 10 minutes.
//
// # Determinism
//
// Every random draw comes from one math/rand/v2 PCG source seeded by
// Config.Seed, drawn under a mutex when a request arrives; provider
// references and notification ids are counters. The same seed and the same
// request sequence give the same behaviour.
package sim
