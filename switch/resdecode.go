package txswitch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Decoders for the resources the outbox carries, for its reader (the
// central database exporter decodes every event of every payment; with
// encoding/json that was most of the export's CPU on the leader). Like
// cmddecode.go they read exactly the canonical JSON that appendOrder,
// appendPayment and appendTimelineEvent write — fields in struct order,
// omitempty fields absent when empty — and hand anything else to
// encoding/json, so the result is always json.Unmarshal's into a zero
// value (resdecode_test.go checks this differentially and by fuzzing).

// DecodeOrder is json.Unmarshal(raw, &o) into a zero Order.
func DecodeOrder(raw []byte) (Order, error) {
	d := &canonDec{b: raw}
	if o := d.order(); !d.bad && d.end() {
		return o, nil
	}
	var o Order
	if err := json.Unmarshal(raw, &o); err != nil {
		return Order{}, fmt.Errorf("decode order: %w", err)
	}
	return o, nil
}

// DecodePayment is json.Unmarshal(raw, &p) into a zero Payment.
func DecodePayment(raw []byte) (Payment, error) {
	d := &canonDec{b: raw}
	if p := d.payment(); !d.bad && d.end() {
		return p, nil
	}
	var p Payment
	if err := json.Unmarshal(raw, &p); err != nil {
		return Payment{}, fmt.Errorf("decode payment: %w", err)
	}
	return p, nil
}

// DecodeTimelineEvent is json.Unmarshal(raw, &ev) into a zero
// TimelineEvent.
func DecodeTimelineEvent(raw []byte) (TimelineEvent, error) {
	if ev, ok := decodeTimelineCanon(raw); ok {
		return ev, nil
	}
	var ev TimelineEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return TimelineEvent{}, fmt.Errorf("decode timeline event: %w", err)
	}
	return ev, nil
}

func decodeTimelineCanon(raw []byte) (TimelineEvent, bool) {
	var ev TimelineEvent
	d := &canonDec{b: raw}
	d.lit(`{"seq":`)
	ev.Seq = d.uint()
	d.lit(`,"at":`)
	ev.At = d.time()
	d.lit(`,"type":`)
	ev.Type = d.str()
	if d.opt(`,"payment_id":`) {
		ev.PaymentID = d.str()
	}
	if d.opt(`,"message":`) {
		ev.Message = d.str()
	}
	if d.opt(`,"data":`) {
		// The last field: its value runs to the closing brace. Kept
		// verbatim, as json.RawMessage is; null and surrounding space
		// are left to encoding/json.
		if d.bad || len(raw)-d.i < 2 || raw[len(raw)-1] != '}' {
			return ev, false
		}
		data := raw[d.i : len(raw)-1]
		if c := data[0]; c == 'n' || isSpace(c) || isSpace(data[len(data)-1]) || !json.Valid(data) {
			return ev, false
		}
		ev.Data = bytes.Clone(data)
		d.i = len(raw) - 1
	}
	d.lit(`}`)
	return ev, !d.bad && d.end()
}

// uint reads an integer as encoding/json accepts it into a uint64 field.
func (d *canonDec) uint() uint64 {
	if d.bad {
		return 0
	}
	j := d.i
	for j < len(d.b) && '0' <= d.b[j] && d.b[j] <= '9' {
		j++
	}
	switch {
	case j == d.i, d.b[d.i] == '0' && j > d.i+1:
		d.bad = true
		return 0
	case j < len(d.b) && (d.b[j] == '.' || d.b[j] == 'e' || d.b[j] == 'E'):
		d.bad = true
		return 0
	}
	v, err := strconv.ParseUint(string(d.b[d.i:j]), 10, 64)
	if err != nil {
		d.bad = true
		return 0
	}
	d.i = j
	return v
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// order reads what appendOrder writes.
func (d *canonDec) order() Order {
	o := d.orderFields()
	d.lit(`}`)
	return o
}

// orderFields reads an order up to, not including, its closing brace:
// in a stored order record (joinObjects) the record's own fields follow.
func (d *canonDec) orderFields() Order {
	var o Order
	d.lit(`{"id":`)
	o.ID = d.str()
	d.lit(`,"merchant_id":`)
	o.MerchantID = d.str()
	d.lit(`,"reference":`)
	o.Reference = d.str()
	d.lit(`,"status":`)
	o.Status = d.str()
	d.lit(`,"amount":`)
	o.Amount = d.money()
	d.lit(`,"customer":{"country":`)
	o.Customer.Country = d.str()
	if d.opt(`,"id":`) {
		o.Customer.ID = d.str()
	}
	if d.opt(`,"email":`) {
		o.Customer.Email = d.str()
	}
	d.lit(`}`)
	d.lit(`,"channel":`)
	o.Channel = d.str()
	if d.opt(`,"lines":[`) {
		o.Lines = []OrderLine{}
		for !d.bad && !d.opt(`]`) {
			if len(o.Lines) > 0 {
				d.lit(`,`)
			}
			var l OrderLine
			d.lit(`{"sku":`)
			l.SKU = d.str()
			d.lit(`,"quantity":`)
			l.Quantity = d.int()
			d.lit(`,"unit_amount":`)
			l.UnitAmount = d.int()
			if d.opt(`,"category":`) {
				l.Category = d.str()
			}
			d.lit(`}`)
			o.Lines = append(o.Lines, l)
		}
	}
	d.lit(`,"authorized":`)
	o.Authorized = d.money()
	d.lit(`,"captured":`)
	o.Captured = d.money()
	d.lit(`,"refunded":`)
	o.Refunded = d.money()
	d.lit(`,"payments":`)
	if !d.opt(`null`) {
		d.lit(`[`)
		o.Payments = []Payment{}
		for !d.bad && !d.opt(`]`) {
			if len(o.Payments) > 0 {
				d.lit(`,`)
			}
			o.Payments = append(o.Payments, d.payment())
		}
	}
	d.lit(`,"created_at":`)
	o.CreatedAt = d.time()
	d.lit(`,"updated_at":`)
	o.UpdatedAt = d.time()
	if d.opt(`,"expires_at":`) {
		t := d.time()
		o.ExpiresAt = &t
	}
	return o
}

// payment reads what appendPayment writes.
func (d *canonDec) payment() Payment {
	p := d.paymentFields()
	d.lit(`}`)
	return p
}

// paymentFields reads a payment up to, not including, its closing brace
// (see orderFields).
func (d *canonDec) paymentFields() Payment {
	var p Payment
	d.lit(`{"id":`)
	p.ID = d.str()
	d.lit(`,"order_id":`)
	p.OrderID = d.str()
	d.lit(`,"merchant_id":`)
	p.MerchantID = d.str()
	d.lit(`,"status":`)
	p.Status = d.str()
	if d.opt(`,"provider":`) {
		p.Provider = d.str()
	}
	if d.opt(`,"provider_ref":`) {
		p.ProviderRef = d.str()
	}
	d.lit(`,"method":`)
	p.Method = d.str()
	d.lit(`,"amount":`)
	p.Amount = d.money()
	if d.opt(`,"surcharge":`) {
		m := d.money()
		p.Surcharge = &m
	}
	d.lit(`,"authorized":`)
	p.Authorized = d.money()
	d.lit(`,"captured":`)
	p.Captured = d.money()
	d.lit(`,"refunded":`)
	p.Refunded = d.money()
	if d.opt(`,"released":`) {
		m := d.money()
		p.Released = &m
	}
	d.lit(`,"capture":`)
	p.CaptureMode = d.str()
	if d.opt(`,"redirect_url":`) {
		p.RedirectURL = d.str()
	}
	if d.opt(`,"failure":`) {
		p.Failure = d.failure()
	}
	d.lit(`,"attempt":`)
	p.Attempt = int(d.int())
	if d.opt(`,"refunds":[`) {
		p.Refunds = []Refund{}
		for !d.bad && !d.opt(`]`) {
			if len(p.Refunds) > 0 {
				d.lit(`,`)
			}
			p.Refunds = append(p.Refunds, d.refund())
		}
	}
	if d.opt(`,"captures":[`) {
		p.Captures = []Capture{}
		for !d.bad && !d.opt(`]`) {
			if len(p.Captures) > 0 {
				d.lit(`,`)
			}
			var c Capture
			d.lit(`{"id":`)
			c.ID = d.str()
			d.lit(`,"payment_id":`)
			c.PaymentID = d.str()
			d.lit(`,"amount":`)
			c.Amount = d.money()
			d.lit(`,"status":`)
			c.Status = d.str()
			d.lit(`,"created_at":`)
			c.CreatedAt = d.time()
			d.lit(`}`)
			p.Captures = append(p.Captures, c)
		}
	}
	if d.opt(`,"cancellation":{"attempt":`) {
		c := &Cancellation{}
		c.Attempt = int(d.int())
		d.lit(`,"status":`)
		c.Status = d.str()
		if d.opt(`,"amount":`) {
			m := d.money()
			c.Amount = &m
		}
		if d.opt(`,"failure":`) {
			c.Failure = d.failure()
		}
		d.lit(`,"created_at":`)
		c.CreatedAt = d.time()
		d.lit(`,"updated_at":`)
		c.UpdatedAt = d.time()
		d.lit(`}`)
		p.Cancellation = c
	}
	d.lit(`,"created_at":`)
	p.CreatedAt = d.time()
	d.lit(`,"updated_at":`)
	p.UpdatedAt = d.time()
	return p
}

// resourcePrefix returns the resource a stored order or payment record
// starts with: encodeOrderRec and encodePaymentRec write the record as
// the canonical resource joined with the record's own fields
// (joinObjects), so the resource is the record up to where its fields
// end, closed. fields reads them (orderFields, paymentFields); ok is false
// when the record is not in that form (encoding/json then decides).
func resourcePrefix(rec []byte, fields func(*canonDec) bool) (res []byte, ok bool) {
	d := &canonDec{b: rec}
	if !fields(d) || d.bad || d.i >= len(rec) || (rec[d.i] != ',' && rec[d.i] != '}') {
		return nil, false
	}
	res = make([]byte, 0, d.i+1)
	return append(append(res, rec[:d.i]...), '}'), true
}

// refund reads what appendRefund writes.
func (d *canonDec) refund() Refund {
	var r Refund
	d.lit(`{"id":`)
	r.ID = d.str()
	d.lit(`,"payment_id":`)
	r.PaymentID = d.str()
	d.lit(`,"order_id":`)
	r.OrderID = d.str()
	d.lit(`,"amount":`)
	r.Amount = d.money()
	if d.opt(`,"reason":`) {
		r.Reason = d.str()
	}
	if d.opt(`,"channel":`) {
		r.Channel = d.str()
	}
	d.lit(`,"status":`)
	r.Status = d.str()
	if d.opt(`,"failure":`) {
		r.Failure = d.failure()
	}
	d.lit(`,"created_at":`)
	r.CreatedAt = d.time()
	d.lit(`}`)
	return r
}

func (d *canonDec) failure() *Failure {
	f := &Failure{}
	d.lit(`{"code":`)
	f.Code = d.str()
	d.lit(`,"message":`)
	f.Message = d.str()
	d.lit(`}`)
	return f
}
