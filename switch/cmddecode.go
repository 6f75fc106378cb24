package txswitch

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Hand-written decoders for the three commands every payment writes
// (create_order, payment_intent, payment_result). Each command is decoded
// once per replica, and encoding/json's reflection made decoding the
// largest single cost of applying one. The log format does not change:
// these read exactly the canonical JSON encodeCommand (json.Marshal)
// writes for these structs — fields in struct order, omitempty fields
// absent when empty — and give up on anything else (a field out of order,
// an unknown field, whitespace, a number with a fraction). decodeCommand then decodes the entry with
// encoding/json as before, so a command decodes to the same value
// whichever path takes it (cmddecode_test.go checks this differentially,
// over the golden log and by fuzzing).

// canonDec is a cursor over one canonical JSON document. Any mismatch sets
// bad; every method is then a no-op and the caller's result is discarded.
type canonDec struct {
	b   []byte
	i   int
	bad bool
}

// lit consumes s.
func (d *canonDec) lit(s string) {
	if d.bad || len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		d.bad = true
		return
	}
	d.i += len(s)
}

// opt consumes s if it comes next (an omitempty field's key).
func (d *canonDec) opt(s string) bool {
	if d.bad || len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

// str reads a string. One without escapes or control characters, in
// valid UTF-8, is the bytes between the quotes, as encoding/json returns
// it; any other is handed to encoding/json alone (escapes are rare: <, >
// and & in free text, which Marshal escapes).
func (d *canonDec) str() string {
	if d.bad || d.i >= len(d.b) || d.b[d.i] != '"' {
		d.bad = true
		return ""
	}
	start := d.i + 1
	plain := true
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			s := d.b[start:j]
			d.i = j + 1
			if plain || utf8.Valid(s) && !hasEscapeOrControl(s) {
				return string(s)
			}
			var v string
			if err := json.Unmarshal(d.b[start-1:j+1], &v); err != nil {
				d.bad = true
			}
			return v
		case c == '\\':
			plain = false
			j++ // the escaped byte cannot end the string
		case c < 0x20 || c >= utf8.RuneSelf:
			plain = false
		}
	}
	d.bad = true
	return ""
}

func hasEscapeOrControl(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return true
		}
	}
	return false
}

// int reads an integer as encoding/json accepts it into an int64 field:
// -?(0|[1-9][0-9]*) in range, not followed by a fraction or exponent.
func (d *canonDec) int() int64 {
	if d.bad {
		return 0
	}
	j := d.i
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	digits := j
	for j < len(d.b) && '0' <= d.b[j] && d.b[j] <= '9' {
		j++
	}
	switch {
	case j == digits, d.b[digits] == '0' && j > digits+1:
		d.bad = true
		return 0
	case j < len(d.b) && (d.b[j] == '.' || d.b[j] == 'e' || d.b[j] == 'E'):
		d.bad = true
		return 0
	}
	v, err := strconv.ParseInt(string(d.b[d.i:j]), 10, 64)
	if err != nil {
		d.bad = true
		return 0
	}
	d.i = j
	return v
}

// time reads a string the way encoding/json hands it to
// time.Time.UnmarshalJSON.
func (d *canonDec) time() time.Time {
	start := d.i
	d.str()
	if d.bad {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalJSON(d.b[start:d.i]); err != nil {
		d.bad = true
	}
	return t
}

func (d *canonDec) money() Money {
	var m Money
	d.lit(`{"value":`)
	m.Value = d.int()
	d.lit(`,"currency":`)
	m.Currency = d.str()
	d.lit(`}`)
	return m
}

func (d *canonDec) idem() *idemRef {
	r := &idemRef{}
	d.lit(`{"merchant":`)
	r.Merchant = d.str()
	d.lit(`,"key":`)
	r.Key = d.str()
	d.lit(`,"fingerprint":`)
	r.Fingerprint = d.str()
	d.lit(`}`)
	return r
}

// candidates reads a []RouteCandidate field's value (null: nil).
func (d *canonDec) candidates() []RouteCandidate {
	if d.opt(`null`) {
		return nil
	}
	d.lit(`[`)
	cs := []RouteCandidate{}
	if d.opt(`]`) {
		return cs
	}
	for !d.bad {
		var c RouteCandidate
		d.lit(`{"provider":`)
		c.Provider = d.str()
		d.lit(`,"breaker":`)
		c.Breaker = BreakerState(d.str())
		if d.opt(`,"skipped":`) {
			d.lit(`true`) // omitempty: false is never written
			c.Skipped = true
		}
		if d.opt(`,"skip_reason":`) {
			c.SkipReason = d.str()
		}
		d.lit(`}`)
		cs = append(cs, c)
		if !d.opt(`,`) {
			break
		}
	}
	d.lit(`]`)
	return cs
}

// end checks the document was consumed exactly.
func (d *canonDec) end() bool { return !d.bad && d.i == len(d.b) }

// decodeCanonical decodes data (starting with fastHeader) when it is a
// command of a type decoded here in canonical form; ok is false otherwise.
func decodeCanonical(typ string, data []byte) (cmd any, ok bool) {
	d := &canonDec{b: data}
	d.lit(fastHeader)
	d.lit(typ)
	d.lit(`","at":`)
	switch typ {
	case cmdTypeCreateOrder:
		cmd = d.createOrder()
	case cmdTypePaymentIntent:
		cmd = d.paymentIntent()
	case cmdTypePaymentResult:
		cmd = d.paymentResult()
	default:
		return nil, false
	}
	d.lit(`}`)
	if !d.end() {
		return nil, false
	}
	return cmd, true
}

func (d *canonDec) createOrder() *cmdCreateOrder {
	c := &cmdCreateOrder{cmdHeader: cmdHeader{V: CommandVersion, Type: cmdTypeCreateOrder}}
	c.At = d.time()
	if d.opt(`,"idem":`) {
		c.Idem = d.idem()
	}
	d.lit(`,"order":`)
	c.Order = d.order()
	if c.Order.Payments != nil {
		// A new order has no payments: encodeCommand writes null.
		// Anything else takes the general path.
		d.bad = true
	}
	return c
}

func (d *canonDec) paymentIntent() *cmdPaymentIntent {
	c := &cmdPaymentIntent{cmdHeader: cmdHeader{V: CommandVersion, Type: cmdTypePaymentIntent}}
	c.At = d.time()
	if d.opt(`,"idem":`) {
		c.Idem = d.idem()
	}
	d.lit(`,"merchant_id":`)
	c.MerchantID = d.str()
	d.lit(`,"order_id":`)
	c.OrderID = d.str()
	d.lit(`,"payment_id":`)
	c.PaymentID = d.str()
	d.lit(`,"method":`)
	c.Method = d.str()
	d.lit(`,"amount":`)
	c.Amount = d.money()
	d.lit(`,"surcharge":`)
	c.Surcharge = d.money()
	d.lit(`,"capture":`)
	c.CaptureMode = d.str()
	if d.opt(`,"payment_data":{`) {
		c.PaymentData = map[string]string{}
		for !d.bad {
			k := d.str()
			d.lit(`:`)
			c.PaymentData[k] = d.str()
			if !d.opt(`,`) {
				break
			}
		}
		d.lit(`}`)
	}
	d.lit(`,"candidates":`)
	c.Candidates = d.candidates()
	if d.opt(`,"provider":`) {
		c.Provider = d.str()
	}
	if d.opt(`,"no_route":`) {
		c.NoRoute = d.str()
	}
	if d.opt(`,"hold_rule":`) {
		c.HoldRule = d.str()
	}
	return c
}

func (d *canonDec) paymentResult() *cmdPaymentResult {
	c := &cmdPaymentResult{cmdHeader: cmdHeader{V: CommandVersion, Type: cmdTypePaymentResult}}
	c.At = d.time()
	d.lit(`,"payment_id":`)
	c.PaymentID = d.str()
	d.lit(`,"attempt":`)
	c.Attempt = int(d.int())
	d.lit(`,"source":`)
	c.Source = d.str()
	d.lit(`,"outcome":`)
	c.Outcome = d.str()
	d.lit(`,"result":{"outcome":`)
	r := &c.Result
	r.Outcome = ProviderOutcome(d.str())
	if d.opt(`,"provider_ref":`) {
		r.ProviderRef = d.str()
	}
	if d.opt(`,"code":`) {
		r.Code = d.str()
	}
	if d.opt(`,"message":`) {
		r.Message = d.str()
	}
	if d.opt(`,"redirect_url":`) {
		r.RedirectURL = d.str()
	}
	if d.opt(`,"amount":`) {
		m := d.money()
		r.Amount = &m
	}
	d.lit(`}`)
	if d.opt(`,"err_code":`) {
		c.ErrCode = d.str()
	}
	if d.opt(`,"err_message":`) {
		c.ErrMessage = d.str()
	}
	d.lit(`,"latency_ms":`)
	c.LatencyMs = d.int()
	if d.opt(`,"next":{"provider":`) {
		c.Next = &nextAttempt{Provider: d.str()}
		d.lit(`,"candidates":`)
		c.Next.Candidates = d.candidates()
		d.lit(`}`)
	}
	return c
}

// decodeOutboxEvent decodes an outbox event in one of the canonical forms
// appendOutboxEvent and appendOutboxRef write (the exporter reads every
// event once); ok is false for anything else, which encoding/json then
// decodes. A resource is kept verbatim, as json.RawMessage keeps it, after
// the same validity check encoding/json makes.
func decodeOutboxEvent(data []byte) (rec outboxRecord, ok bool) {
	d := &canonDec{b: data}
	d.lit(`{"seq":`)
	if d.i < len(data) && data[d.i] == '-' {
		return outboxRecord{}, false // encoding/json refuses even -0 for a uint64
	}
	seq := d.int()
	ev := &rec.OutboxEvent
	d.lit(`,"id":`)
	ev.ID = d.str()
	d.lit(`,"kind":`)
	ev.Kind = d.str()
	d.lit(`,"merchant_id":`)
	ev.MerchantID = d.str()
	if d.opt(`,"order_id":`) {
		ev.OrderID = d.str()
	}
	d.lit(`,"at":`)
	ev.At = d.time()
	if d.opt(`,"ref":`) {
		rec.Ref = d.str()
		if d.bad || seq < 0 || rec.Ref == "" || d.i != len(data)-1 || data[d.i] != '}' {
			return outboxRecord{}, false
		}
		ev.Seq = uint64(seq)
		return rec, true
	}
	d.lit(`,"resource":`)
	if d.bad || seq < 0 || len(data)-d.i < 3 {
		return outboxRecord{}, false
	}
	// An object, ending right before the event's closing brace.
	res := data[d.i : len(data)-1]
	if res[0] != '{' || res[len(res)-1] != '}' || data[len(data)-1] != '}' || !json.Valid(res) {
		return outboxRecord{}, false
	}
	ev.Seq, ev.Resource = uint64(seq), bytes.Clone(res)
	return rec, true
}
