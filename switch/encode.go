package txswitch

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Append-based JSON encoders for the records apply writes on every
// command (timeline events and outbox envelopes). They exist for speed
// only: each produces exactly the bytes encoding/json's Marshal produces
// for the same value (encode_test.go checks this differentially), so the
// stored state is the same as if Marshal had written it. Marshal pays for
// reflection, for calling time.Time.MarshalJSON and for re-compacting
// every json.RawMessage; here a resource encoded once is spliced verbatim.
//
// A value these encoders cannot reproduce exactly (a time outside what
// RFC 3339 allows) makes them return errFallback and the caller uses
// encoding/json, which then fails exactly as before.

var errFallback = errors.New("value needs encoding/json")

// appendJSONString appends s as encoding/json encodes a string with HTML
// escaping (its default): <, >, & and control characters as \u00XX,
// invalid UTF-8 as \ufffd, U+2028/U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONTime appends t as time.Time.MarshalJSON does, or returns
// errFallback for the times MarshalJSON rejects.
func appendJSONTime(dst []byte, t time.Time) ([]byte, error) {
	dst = append(dst, '"')
	n0 := len(dst)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	// The same edge cases time.Time.appendStrictRFC3339 refuses.
	switch {
	case len(dst) < n0+5 || dst[n0+4] != '-':
		return dst, errFallback
	case dst[len(dst)-1] != 'Z':
		c := dst[len(dst)-len("Z07:00")]
		tail := dst[len(dst)-len("07:00"):]
		if ('0' <= c && c <= '9') || 10*(tail[0]-'0')+(tail[1]-'0') >= 24 {
			return dst, errFallback
		}
	}
	return append(dst, '"'), nil
}

// appendRawField appends ,"name":raw (raw is trusted compact JSON that
// encoding/json produced, so compacting it again would not change it).
func appendRawField(dst []byte, name string, raw []byte) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return append(dst, raw...)
}

// appendOptStringField is appendStringField for an omitempty field: it
// appends nothing for "".
func appendOptStringField(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	return appendStringField(dst, name, v)
}

func appendStringField(dst []byte, name, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendJSONString(dst, v)
}

// appendTimelineEvent appends json.Marshal(ev) for a TimelineEvent whose
// Data (if any) came from json.Marshal to dst.
func appendTimelineEvent(dst []byte, ev *TimelineEvent) ([]byte, error) {
	b := slices.Grow(dst, 160+len(ev.Message)+len(ev.Data))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `,"at":`...)
	b, err := appendJSONTime(b, ev.At)
	if err != nil {
		m, err := json.Marshal(ev)
		return append(dst, m...), err
	}
	b = appendStringField(b, "type", ev.Type)
	b = appendOptStringField(b, "payment_id", ev.PaymentID)
	b = appendOptStringField(b, "message", ev.Message)
	if len(ev.Data) != 0 {
		b = appendRawField(b, "data", ev.Data)
	}
	return append(b, '}'), nil
}

// appendOutboxEvent appends json.Marshal of the OutboxEvent with these
// fields, resource being json.Marshal output, to dst.
func appendOutboxEvent(dst []byte, seq uint64, kind, merchant, orderID string, at time.Time, resource []byte) ([]byte, error) {
	b, err := appendOutboxHead(slices.Grow(dst, 128+len(kind)+len(merchant)+len(orderID)+len(resource)), seq, kind, merchant, orderID, at)
	if err != nil {
		m, err := json.Marshal(OutboxEvent{Seq: seq, ID: "evt_" + strconv.FormatUint(seq, 10), Kind: kind, MerchantID: merchant,
			OrderID: orderID, At: at, Resource: resource})
		return append(dst, m...), err
	}
	b = appendRawField(b, "resource", resource)
	return append(b, '}'), nil
}

// appendOutboxRef appends the stored form of an outbox event that names
// its resource (ref) instead of copying it: the outboxRecord encoding/json
// writes for it, without a resource.
func appendOutboxRef(dst []byte, seq uint64, kind, merchant, orderID string, at time.Time, ref string) ([]byte, error) {
	b, err := appendOutboxHead(slices.Grow(dst, 128+len(kind)+len(merchant)+len(orderID)+len(ref)), seq, kind, merchant, orderID, at)
	if err != nil {
		return dst, err
	}
	b = appendStringField(b, "ref", ref)
	return append(b, '}'), nil
}

// appendOutboxHead appends an outbox event's fields up to and including
// "at"; it fails only for a time JSON cannot hold.
func appendOutboxHead(b []byte, seq uint64, kind, merchant, orderID string, at time.Time) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"id":"evt_`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '"')
	b = appendStringField(b, "kind", kind)
	b = appendStringField(b, "merchant_id", merchant)
	b = appendOptStringField(b, "order_id", orderID)
	b = append(b, `,"at":`...)
	return appendJSONTime(b, at)
}

// joinObjects appends to dst the merge of two encoded JSON objects {a…}
// and {b…}, {a…,b…}: exactly what encoding/json writes for a struct
// embedding A then B, as long as neither is empty and no field name
// repeats.
func joinObjects(dst, a, b []byte) []byte {
	out := slices.Grow(dst, len(a)+len(b))
	out = append(out, a[:len(a)-1]...)
	out = append(out, ',')
	return append(out, b[1:]...)
}

// encodeIdemRecord is json.Marshal(rec) for reply bodies produced by
// encoding/json (every reply apply makes).
func encodeIdemRecord(rec *idemRecord) ([]byte, error) {
	if rec.Reply != nil && len(rec.Reply.Body) == 0 {
		return json.Marshal(rec) // null or invalid body: let encoding/json decide
	}
	b := make([]byte, 0, 160+len(rec.State)+replyLen(rec.Reply))
	b = append(b, `{"fingerprint":`...)
	b = appendJSONString(b, rec.Fingerprint)
	b = appendStringField(b, "state", rec.State)
	if rec.Reply != nil {
		b = append(b, `,"reply":{"status":`...)
		b = strconv.AppendInt(b, int64(rec.Reply.Status), 10)
		b = appendRawField(b, "body", rec.Reply.Body)
		b = append(b, '}')
	}
	b = append(b, `,"created_at":`...)
	b, err := appendJSONTime(b, rec.CreatedAt)
	if err != nil {
		return json.Marshal(rec)
	}
	return append(b, '}'), nil
}

func replyLen(r *Reply) int {
	if r == nil {
		return 0
	}
	return len(r.Body)
}

// The API resources apply encodes on every payment command. Field order,
// names and omitempty rules are those of the struct tags in types.go.

func appendMoney(b []byte, m Money) []byte {
	b = append(b, `{"value":`...)
	b = strconv.AppendInt(b, m.Value, 10)
	b = appendStringField(b, "currency", m.Currency)
	return append(b, '}')
}

func appendMoneyField(b []byte, name string, m Money) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendMoney(b, m)
}

func appendFailure(b []byte, f *Failure) []byte {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, f.Code)
	b = appendStringField(b, "message", f.Message)
	return append(b, '}')
}

func appendTimeField(b []byte, name string, t time.Time) ([]byte, error) {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONTime(b, t)
}

// encodePayment is json.Marshal(p).
func encodePayment(p *Payment) ([]byte, error) {
	b, err := appendPayment(make([]byte, 0, 512+256*(len(p.Refunds)+len(p.Captures))), p)
	if err != nil {
		return json.Marshal(p)
	}
	return b, nil
}

func appendPayment(b []byte, p *Payment) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendJSONString(b, p.ID)
	b = appendStringField(b, "order_id", p.OrderID)
	b = appendStringField(b, "merchant_id", p.MerchantID)
	b = appendStringField(b, "status", p.Status)
	b = appendOptStringField(b, "provider", p.Provider)
	b = appendOptStringField(b, "provider_ref", p.ProviderRef)
	b = appendStringField(b, "method", p.Method)
	b = appendMoneyField(b, "amount", p.Amount)
	if p.Surcharge != nil {
		b = appendMoneyField(b, "surcharge", *p.Surcharge)
	}
	b = appendMoneyField(b, "authorized", p.Authorized)
	b = appendMoneyField(b, "captured", p.Captured)
	b = appendMoneyField(b, "refunded", p.Refunded)
	if p.Released != nil {
		b = appendMoneyField(b, "released", *p.Released)
	}
	b = appendStringField(b, "capture", p.CaptureMode)
	b = appendOptStringField(b, "redirect_url", p.RedirectURL)
	if p.Failure != nil {
		b = append(b, `,"failure":`...)
		b = appendFailure(b, p.Failure)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(p.Attempt), 10)
	if len(p.Refunds) > 0 {
		b = append(b, `,"refunds":[`...)
		for i := range p.Refunds {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendRefund(b, &p.Refunds[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if len(p.Captures) > 0 {
		b = append(b, `,"captures":[`...)
		for i := range p.Captures {
			c := &p.Captures[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendJSONString(b, c.ID)
			b = appendStringField(b, "payment_id", c.PaymentID)
			b = appendMoneyField(b, "amount", c.Amount)
			b = appendStringField(b, "status", c.Status)
			if b, err = appendTimeField(b, "created_at", c.CreatedAt); err != nil {
				return nil, err
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if c := p.Cancellation; c != nil {
		b = append(b, `,"cancellation":{"attempt":`...)
		b = strconv.AppendInt(b, int64(c.Attempt), 10)
		b = appendStringField(b, "status", c.Status)
		if c.Amount != nil {
			b = appendMoneyField(b, "amount", *c.Amount)
		}
		if c.Failure != nil {
			b = append(b, `,"failure":`...)
			b = appendFailure(b, c.Failure)
		}
		if b, err = appendTimeField(b, "created_at", c.CreatedAt); err != nil {
			return nil, err
		}
		if b, err = appendTimeField(b, "updated_at", c.UpdatedAt); err != nil {
			return nil, err
		}
		b = append(b, '}')
	}
	if b, err = appendTimeField(b, "created_at", p.CreatedAt); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, "updated_at", p.UpdatedAt); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendRefund(b []byte, r *Refund) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	b = appendStringField(b, "payment_id", r.PaymentID)
	b = appendStringField(b, "order_id", r.OrderID)
	b = appendMoneyField(b, "amount", r.Amount)
	b = appendOptStringField(b, "reason", r.Reason)
	b = appendOptStringField(b, "channel", r.Channel)
	b = appendStringField(b, "status", r.Status)
	if r.Failure != nil {
		b = append(b, `,"failure":`...)
		b = appendFailure(b, r.Failure)
	}
	b, err := appendTimeField(b, "created_at", r.CreatedAt)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// encodeOrder is json.Marshal(o).
func encodeOrder(o *Order) ([]byte, error) {
	b, err := appendOrder(make([]byte, 0, 512+64*len(o.Lines)+512*len(o.Payments)), o)
	if err != nil {
		return json.Marshal(o)
	}
	return b, nil
}

func appendOrder(b []byte, o *Order) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, o.ID)
	b = appendStringField(b, "merchant_id", o.MerchantID)
	b = appendStringField(b, "reference", o.Reference)
	b = appendStringField(b, "status", o.Status)
	b = appendMoneyField(b, "amount", o.Amount)
	b = append(b, `,"customer":{"country":`...)
	b = appendJSONString(b, o.Customer.Country)
	b = appendOptStringField(b, "id", o.Customer.ID)
	b = appendOptStringField(b, "email", o.Customer.Email)
	b = append(b, '}')
	b = appendStringField(b, "channel", o.Channel)
	if len(o.Lines) > 0 {
		b = append(b, `,"lines":[`...)
		for i := range o.Lines {
			l := &o.Lines[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"sku":`...)
			b = appendJSONString(b, l.SKU)
			b = append(b, `,"quantity":`...)
			b = strconv.AppendInt(b, l.Quantity, 10)
			b = append(b, `,"unit_amount":`...)
			b = strconv.AppendInt(b, l.UnitAmount, 10)
			b = appendOptStringField(b, "category", l.Category)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendMoneyField(b, "authorized", o.Authorized)
	b = appendMoneyField(b, "captured", o.Captured)
	b = appendMoneyField(b, "refunded", o.Refunded)
	var err error
	if o.Payments == nil {
		b = append(b, `,"payments":null`...)
	} else {
		b = append(b, `,"payments":[`...)
		for i := range o.Payments {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendPayment(b, &o.Payments[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if b, err = appendTimeField(b, "created_at", o.CreatedAt); err != nil {
		return nil, err
	}
	if b, err = appendTimeField(b, "updated_at", o.UpdatedAt); err != nil {
		return nil, err
	}
	if o.ExpiresAt != nil {
		if b, err = appendTimeField(b, "expires_at", *o.ExpiresAt); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// encodeOrderExtra is json.Marshal(x).
func encodeOrderExtra(x *orderExtra) []byte {
	b := make([]byte, 0, 96+len(x.OfferHash))
	b = append(b, `{"num_payments":`...)
	b = strconv.AppendInt(b, int64(x.NumPayments), 10)
	b = append(b, `,"timeline_seq":`...)
	b = strconv.AppendUint(b, x.TimelineSeq, 10)
	b = appendOptStringField(b, "offer_hash", x.OfferHash)
	if x.OfferEvents != 0 {
		b = append(b, `,"offer_events":`...)
		b = strconv.AppendInt(b, int64(x.OfferEvents), 10)
	}
	return append(b, '}')
}

// The records and timeline data apply writes on every payment command
// besides the resources above.

func appendCandidates(b []byte, cs []RouteCandidate) []byte {
	if cs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range cs {
		c := &cs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"provider":`...)
		b = appendJSONString(b, c.Provider)
		b = appendStringField(b, "breaker", string(c.Breaker))
		if c.Skipped {
			b = append(b, `,"skipped":true`...)
		}
		b = appendOptStringField(b, "skip_reason", c.SkipReason)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendIdemRef(b []byte, r *idemRef) []byte {
	b = append(b, `{"merchant":`...)
	b = appendJSONString(b, r.Merchant)
	b = appendStringField(b, "key", r.Key)
	b = appendStringField(b, "fingerprint", r.Fingerprint)
	return append(b, '}')
}

func appendIntField(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// encodeRoutingData is json.Marshal(d).
func encodeRoutingData(d *routingData) []byte {
	b := make([]byte, 0, 96+64*len(d.Candidates))
	b = append(b, `{"method":`...)
	b = appendJSONString(b, d.Method)
	b = appendIntField(b, "attempt", int64(d.Attempt))
	b = appendOptStringField(b, "provider", d.Provider)
	b = append(b, `,"candidates":`...)
	b = appendCandidates(b, d.Candidates)
	b = appendOptStringField(b, "no_route", d.NoRoute)
	return append(b, '}')
}

// encodeProviderData is json.Marshal(d).
func encodeProviderData(d *providerData) []byte {
	b := make([]byte, 0, 192+len(d.Message))
	b = append(b, `{"op":`...)
	b = appendJSONString(b, d.Op)
	b = appendStringField(b, "provider", d.Provider)
	b = appendStringField(b, "idempotency_key", d.Key)
	if d.Attempt != 0 {
		b = appendIntField(b, "attempt", int64(d.Attempt))
	}
	if d.Amount != nil {
		b = appendMoneyField(b, "amount", *d.Amount)
	}
	b = appendOptStringField(b, "outcome", d.Outcome)
	b = appendOptStringField(b, "code", d.Code)
	b = appendOptStringField(b, "message", d.Message)
	b = appendOptStringField(b, "provider_ref", d.ProviderRef)
	b = appendIntField(b, "latency_ms", d.LatencyMs)
	b = appendOptStringField(b, "source", d.Source)
	return append(b, '}')
}

// encodePaymentExtra is json.Marshal(x).
func encodePaymentExtra(x *paymentExtra) ([]byte, error) {
	b := make([]byte, 0, 128+64*len(x.Candidates)+32*len(x.PaymentData))
	b = append(b, `{"country":`...)
	b = appendJSONString(b, x.Country)
	if len(x.PaymentData) > 0 {
		b = append(b, `,"payment_data":{`...)
		for i, k := range slices.Sorted(maps.Keys(x.PaymentData)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, x.PaymentData[k])
		}
		b = append(b, '}')
	}
	if len(x.Candidates) > 0 {
		b = append(b, `,"candidates":`...)
		b = appendCandidates(b, x.Candidates)
	}
	if o := x.Open; o != nil {
		b = append(b, `,"open":{"n":`...)
		b = strconv.AppendInt(b, int64(o.N), 10)
		b = appendStringField(b, "provider", o.Provider)
		b = appendStringField(b, "key", o.Key)
		var err error
		if b, err = appendTimeField(b, "at", o.At); err != nil {
			return nil, err
		}
		b = append(b, '}')
	}
	if x.Idem != nil {
		b = append(b, `,"idem":`...)
		b = appendIdemRef(b, x.Idem)
	}
	if x.PendingCapture != 0 {
		b = appendIntField(b, "pending_capture", x.PendingCapture)
	}
	if x.PendingRefund != 0 {
		b = appendIntField(b, "pending_refund", x.PendingRefund)
	}
	b = appendOptStringField(b, "pending_cancel", x.PendingCancel)
	if x.CancelAttempts != 0 {
		b = appendIntField(b, "cancel_attempts", int64(x.CancelAttempts))
	}
	return append(b, '}'), nil
}

// encodeInDoubt is json.Marshal(d).
func encodeInDoubt(d *inDoubtRec) ([]byte, error) {
	b := make([]byte, 0, 320)
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, d.Kind)
	b = appendStringField(b, "key", d.Key)
	b = appendStringField(b, "payment_id", d.PaymentID)
	b = appendStringField(b, "order_id", d.OrderID)
	b = appendStringField(b, "merchant_id", d.MerchantID)
	b = appendOptStringField(b, "op_id", d.OpID)
	if d.Attempt != 0 {
		b = appendIntField(b, "attempt", int64(d.Attempt))
	}
	b = appendStringField(b, "provider", d.Provider)
	b = appendStringField(b, "method", d.Method)
	b = appendMoneyField(b, "amount", d.Amount)
	b = appendOptStringField(b, "country", d.Country)
	if d.Capture {
		b = append(b, `,"capture":true`...)
	}
	b = appendOptStringField(b, "provider_ref", d.ProviderRef)
	b, err := appendTimeField(b, "at", d.At)
	if err != nil {
		return nil, err
	}
	if d.InDoubt {
		b = append(b, `,"in_doubt":true`...)
	}
	if d.Pending {
		b = append(b, `,"pending":true`...)
	}
	if d.AmountMismatch {
		b = append(b, `,"amount_mismatch":true`...)
	}
	if d.Idem != nil {
		b = append(b, `,"idem":`...)
		b = appendIdemRef(b, d.Idem)
	}
	return append(b, '}'), nil
}
