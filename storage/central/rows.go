package central

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Outbox event kinds the exporter understands.
const (
	KindOrder    = "order"
	KindPayment  = "payment"
	KindRefund   = "refund"
	KindCapture  = "capture"
	KindTimeline = "timeline"
	KindMerchant = "merchant"
)

// TimelineProviderResponse is the timeline type whose Data becomes a
// provider_attempts row. Its Data is read as ProviderResponseData.
const TimelineProviderResponse = "provider_response"

// ProviderResponseData is the shape of a provider_response timeline event's
// Data that the exporter reads (other fields are kept in timeline_events.data).
type ProviderResponseData struct {
	Op        string `json:"op"`
	Provider  string `json:"provider"`
	Attempt   int    `json:"attempt"`
	LatencyMS *int64 `json:"latency_ms"`
	Outcome   string `json:"outcome"`
	Code      string `json:"code"`
}

// errBadEvent marks an event the exporter cannot decode. It is the source's
// bug, not the database's, so it never reaches the breaker; the export stops
// at that batch (LastError says which event) rather than skip a committed
// change.
var errBadEvent = errors.New("undecodable outbox event")

// column types as sent to unnest(); a trailing '?' means nullable.
type colType string

const (
	tText  colType = "text"
	tTextN colType = "text?"
	tInt8  colType = "int8"
	tInt8N colType = "int8?"
	tInt4  colType = "int4"
	tTime  colType = "timestamptz"
	tTimeN colType = "timestamptz?"
	tJSONN colType = "jsonb?"
)

type column struct {
	name string
	typ  colType
}

// tableSpec describes one target table of the exporter.
//
// Expand/contract contract: the exporter names every column it writes and
// never reads tables back, so a migration may add nullable (or defaulted)
// columns and new tables at any time; a column may only be dropped after a
// release whose exporter no longer writes it is everywhere.
type tableSpec struct {
	name     string
	cols     []column
	conflict string // conflict target
	// guarded: ON CONFLICT DO UPDATE only when the incoming last_event_seq
	// is newer; otherwise ON CONFLICT DO NOTHING (immutable rows).
	guarded bool
	sql     string
	// insertSQL (immutable tables only) is sql without ON CONFLICT: cheaper
	// (no speculative insertion) when none of the rows can exist yet, and
	// failing with unique_violation if one does.
	insertSQL string
}

func (t *tableSpec) build() *tableSpec {
	names := make([]string, len(t.cols))
	params := make([]string, len(t.cols))
	sel := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
		pt := strings.TrimSuffix(string(c.typ), "?")
		sel[i] = c.name
		if pt == "jsonb" {
			pt = "text" // sent as text, cast in the SELECT
			sel[i] = c.name + "::jsonb"
		}
		params[i] = fmt.Sprintf("$%d::%s[]", i+1, pt)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s)\nSELECT %s FROM unnest(%s) AS u(%s)\nON CONFLICT (%s) ",
		t.name, strings.Join(names, ", "), strings.Join(sel, ", "), strings.Join(params, ", "), strings.Join(names, ", "), t.conflict)
	if !t.guarded {
		t.insertSQL = strings.TrimSuffix(b.String(), "\nON CONFLICT ("+t.conflict+") ")
		b.WriteString("DO NOTHING")
	} else {
		var sets []string
		keys := map[string]bool{}
		for _, k := range strings.Split(t.conflict, ",") {
			keys[strings.TrimSpace(k)] = true
		}
		for _, c := range t.cols {
			if !keys[c.name] {
				sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%s", c.name, c.name))
			}
		}
		fmt.Fprintf(&b, "DO UPDATE SET %s\nWHERE %s.last_event_seq < EXCLUDED.last_event_seq", strings.Join(sets, ", "), t.name)
	}
	t.sql = b.String()
	return t
}

var (
	merchantsTable = (&tableSpec{name: "merchants", conflict: "id", guarded: true, cols: []column{
		{"id", tText}, {"name", tText}, {"last_event_seq", tInt8},
	}}).build()
	ordersTable = (&tableSpec{name: "orders", conflict: "id", guarded: true, cols: []column{
		{"id", tText}, {"merchant_id", tText}, {"reference", tText}, {"status", tText},
		{"amount_minor", tInt8}, {"currency", tText}, {"customer_country", tText}, {"customer_id", tText},
		{"channel", tText}, {"authorized_minor", tInt8}, {"captured_minor", tInt8}, {"refunded_minor", tInt8},
		{"created_at", tTime}, {"updated_at", tTime}, {"expires_at", tTimeN}, {"last_event_seq", tInt8},
	}}).build()
	orderLinesTable = (&tableSpec{name: "order_lines", conflict: "order_id, line_no", guarded: true, cols: []column{
		{"order_id", tText}, {"line_no", tInt4}, {"sku", tText}, {"quantity", tInt8},
		{"unit_amount_minor", tInt8}, {"category", tText}, {"last_event_seq", tInt8},
	}}).build()
	paymentsTable = (&tableSpec{name: "payments", conflict: "id", guarded: true, cols: []column{
		{"id", tText}, {"order_id", tText}, {"merchant_id", tText}, {"status", tText},
		{"provider", tText}, {"provider_ref", tText}, {"method", tText}, {"currency", tText},
		{"amount_minor", tInt8}, {"surcharge_minor", tInt8}, {"authorized_minor", tInt8},
		{"captured_minor", tInt8}, {"refunded_minor", tInt8}, {"capture_mode", tText},
		{"failure_code", tTextN}, {"failure_message", tTextN}, {"attempt", tInt4},
		{"created_at", tTime}, {"updated_at", tTime},
		{"cancellation_status", tTextN}, {"cancellation_failure_code", tTextN}, {"last_event_seq", tInt8},
	}}).build()
	capturesTable = (&tableSpec{name: "captures", conflict: "id", guarded: true, cols: []column{
		{"id", tText}, {"payment_id", tText}, {"order_id", tText}, {"merchant_id", tText},
		{"amount_minor", tInt8}, {"currency", tText}, {"status", tText}, {"created_at", tTime},
		{"last_event_seq", tInt8},
	}}).build()
	refundsTable = (&tableSpec{name: "refunds", conflict: "id", guarded: true, cols: []column{
		{"id", tText}, {"payment_id", tText}, {"order_id", tText}, {"merchant_id", tText},
		{"amount_minor", tInt8}, {"currency", tText}, {"reason", tText}, {"channel", tText},
		{"status", tText}, {"failure_code", tTextN}, {"created_at", tTime}, {"last_event_seq", tInt8},
	}}).build()
	timelineTable = (&tableSpec{name: "timeline_events", conflict: "order_id, seq", cols: []column{
		{"order_id", tText}, {"seq", tInt8}, {"merchant_id", tText}, {"at", tTime}, {"type", tText},
		{"payment_id", tTextN}, {"message", tText}, {"data", tJSONN}, {"event_seq", tInt8},
	}}).build()
	attemptsTable = (&tableSpec{name: "provider_attempts", conflict: "order_id, timeline_seq", cols: []column{
		{"order_id", tText}, {"timeline_seq", tInt8}, {"payment_id", tTextN}, {"merchant_id", tText},
		{"op", tText}, {"provider", tText}, {"attempt", tInt4}, {"latency_ms", tInt8N}, {"outcome", tText},
		{"code", tText}, {"at", tTime},
	}}).build()
)

// rowSet collects one table's rows of a batch, keyed so that within a batch
// only the newest state of a row is sent (one INSERT ... ON CONFLICT DO
// UPDATE may not touch the same row twice).
type rowSet struct {
	spec *tableSpec
	rows map[string][]any
	seq  map[string]uint64
}

func newRowSet(spec *tableSpec) *rowSet {
	return &rowSet{spec: spec, rows: map[string][]any{}, seq: map[string]uint64{}}
}

// put keeps row for key unless a newer event already supplied it.
func (r *rowSet) put(key string, seq uint64, row ...any) {
	if old, ok := r.seq[key]; ok && old >= seq {
		return
	}
	r.seq[key], r.rows[key] = seq, row
}

// args transposes the rows (sorted by key, so concurrent writers lock rows
// in the same order) into one typed array per column for unnest().
func (r *rowSet) args() []any {
	keys := make([]string, 0, len(r.rows))
	for k := range r.rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, len(r.spec.cols))
	for i, c := range r.spec.cols {
		switch c.typ {
		case tText:
			a := make([]string, len(keys))
			for j, k := range keys {
				a[j] = withoutNUL(r.rows[k][i].(string))
			}
			out[i] = a
		case tTextN:
			a := make([]*string, len(keys))
			for j, k := range keys {
				if v := r.rows[k][i].(*string); v != nil {
					a[j] = new(withoutNUL(*v))
				}
			}
			out[i] = a
		case tJSONN:
			a := make([]*string, len(keys))
			for j, k := range keys {
				if v := r.rows[k][i].(*string); v != nil {
					a[j] = new(jsonWithoutNUL(*v))
				}
			}
			out[i] = a
		case tInt8:
			a := make([]int64, len(keys))
			for j, k := range keys {
				a[j] = r.rows[k][i].(int64)
			}
			out[i] = a
		case tInt8N:
			a := make([]*int64, len(keys))
			for j, k := range keys {
				a[j] = r.rows[k][i].(*int64)
			}
			out[i] = a
		case tInt4:
			a := make([]int32, len(keys))
			for j, k := range keys {
				a[j] = r.rows[k][i].(int32)
			}
			out[i] = a
		case tTime:
			a := make([]time.Time, len(keys))
			for j, k := range keys {
				a[j] = r.rows[k][i].(time.Time)
			}
			out[i] = a
		case tTimeN:
			a := make([]*time.Time, len(keys))
			for j, k := range keys {
				a[j] = r.rows[k][i].(*time.Time)
			}
			out[i] = a
		}
	}
	return out
}

// PostgreSQL's text and jsonb cannot hold the NUL character, and one
// event carrying it would stop the export of every later event (the batch
// is refused, again and again). The journal keeps such strings as they
// came (a PSP's message, or what an older release let a merchant send);
// their PostgreSQL copy drops the NULs.

func withoutNUL(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

// jsonWithoutNUL drops the NULs from the strings (and keys) of a JSON
// document; it re-encodes only a document that may hold one.
func jsonWithoutNUL(doc string) string {
	if !strings.Contains(doc, `\u0000`) {
		return doc
	}
	d := json.NewDecoder(strings.NewReader(doc))
	d.UseNumber() // amounts stay exact
	var v any
	if err := d.Decode(&v); err != nil {
		return doc // not JSON: PostgreSQL says so, as before
	}
	out, err := json.Marshal(dropNUL(v))
	if err != nil {
		return doc
	}
	return string(out)
}

func dropNUL(v any) any {
	switch t := v.(type) {
	case string:
		return withoutNUL(t)
	case []any:
		for i := range t {
			t[i] = dropNUL(t[i])
		}
		return t
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[withoutNUL(k)] = dropNUL(e)
		}
		return m
	}
	return v
}

// batchRows is a decoded batch, ready to write.
type batchRows struct {
	sets   []*rowSet // in write order
	byName map[string]*rowSet
	// first..last are the batch's event seqs (dense): the range recorded as
	// exported.
	first, last uint64
}

func newBatchRows() *batchRows {
	b := &batchRows{byName: map[string]*rowSet{}}
	for _, spec := range []*tableSpec{merchantsTable, ordersTable, orderLinesTable, paymentsTable,
		capturesTable, refundsTable, timelineTable, attemptsTable} {
		rs := newRowSet(spec)
		b.byName[spec.name] = rs
		b.sets = append(b.sets, rs)
	}
	return b
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// decodeBatch turns outbox events (dense in seq) into rows. An event of a
// kind this exporter does not know stops the batch like an undecodable one:
// recording it as exported would let the outbox forget it with no row in
// PostgreSQL. (A newer release writes a new kind only once the cluster
// version gate has moved, when every member, this exporter's included,
// runs that release; so it takes a bug to get here.)
func decodeBatch(events []txswitch.OutboxEvent) (*batchRows, error) {
	b := newBatchRows()
	// Resources read back as of one view (AsOf) come once per order or
	// payment per read, named by several events: the rows of a second one
	// would change nothing (same version), so it is not decoded again.
	seen := map[string]bool{}
	for i := range events {
		ev := &events[i]
		if ev.AsOf > 0 && (ev.Kind == KindOrder || ev.Kind == KindPayment) {
			k := ev.Kind + "\x00" + strconv.FormatUint(ev.AsOf, 10) + "\x00" + string(ev.Resource)
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		if err := b.add(ev); err != nil {
			return nil, fmt.Errorf("event %s (seq %d, kind %s): %w: %v", ev.ID, ev.Seq, ev.Kind, errBadEvent, err)
		}
	}
	if len(events) > 0 {
		b.first, b.last = events[0].Seq, events[len(events)-1].Seq
	}
	return b, nil
}

func (b *batchRows) add(ev *txswitch.OutboxEvent) error {
	// A resource read when the exporter asked shows the state as of AsOf,
	// not as of its event: rows take that as their version, so they never
	// move backwards (RowVersion).
	ver := ev.RowVersion()
	seq := int64(ver)
	switch ev.Kind {
	case KindMerchant:
		var m txswitch.MerchantConfig
		if err := json.Unmarshal(ev.Resource, &m); err != nil {
			return err
		}
		if m.ID == "" {
			m.ID = ev.MerchantID
		}
		if m.ID == "" {
			return errors.New("merchant without id")
		}
		b.byName["merchants"].put(m.ID, ver, m.ID, m.Name, seq)
	case KindOrder:
		o, err := txswitch.DecodeOrder(ev.Resource)
		if err != nil {
			return err
		}
		if o.ID == "" {
			return errors.New("order without id")
		}
		b.byName["orders"].put(o.ID, ver, o.ID, o.MerchantID, o.Reference, o.Status,
			o.Amount.Value, o.Amount.Currency, o.Customer.Country, o.Customer.ID, o.Channel,
			o.Authorized.Value, o.Captured.Value, o.Refunded.Value, o.CreatedAt, o.UpdatedAt, o.ExpiresAt, seq)
		for i, l := range o.Lines {
			b.byName["order_lines"].put(fmt.Sprintf("%s\x00%06d", o.ID, i), ver,
				o.ID, int32(i+1), l.SKU, l.Quantity, l.UnitAmount, l.Category, seq)
		}
		// Orders may embed their payments; their state is as new as the order's.
		for i := range o.Payments {
			b.putPayment(ev, &o.Payments[i])
		}
	case KindPayment:
		p, err := txswitch.DecodePayment(ev.Resource)
		if err != nil {
			return err
		}
		if p.ID == "" {
			return errors.New("payment without id")
		}
		b.putPayment(ev, &p)
	case KindCapture:
		var c txswitch.Capture
		if err := json.Unmarshal(ev.Resource, &c); err != nil {
			return err
		}
		if c.ID == "" {
			return errors.New("capture without id")
		}
		b.putCapture(ev, &c)
	case KindRefund:
		var r txswitch.Refund
		if err := json.Unmarshal(ev.Resource, &r); err != nil {
			return err
		}
		if r.ID == "" {
			return errors.New("refund without id")
		}
		b.putRefund(ev, &r)
	case KindTimeline:
		t, err := txswitch.DecodeTimelineEvent(ev.Resource)
		if err != nil {
			return err
		}
		if ev.OrderID == "" {
			return errors.New("timeline event without order id")
		}
		var data *string
		if len(t.Data) > 0 && string(t.Data) != "null" {
			s := string(t.Data)
			data = &s
		}
		key := fmt.Sprintf("%s\x00%020d", ev.OrderID, t.Seq)
		b.byName["timeline_events"].put(key, ver, ev.OrderID, int64(t.Seq), ev.MerchantID, t.At,
			t.Type, optString(t.PaymentID), t.Message, data, seq)
		if t.Type == TimelineProviderResponse {
			var d ProviderResponseData
			if data != nil {
				if err := json.Unmarshal(t.Data, &d); err != nil {
					return fmt.Errorf("provider_response data: %w", err)
				}
			}
			b.byName["provider_attempts"].put(key, ver, ev.OrderID, int64(t.Seq), optString(t.PaymentID),
				ev.MerchantID, d.Op, d.Provider, int32(d.Attempt), d.LatencyMS, d.Outcome, d.Code, t.At)
		}
	default:
		return fmt.Errorf("unknown kind %q: an exporter older than the release that wrote it", ev.Kind)
	}
	return nil
}

func (b *batchRows) putPayment(ev *txswitch.OutboxEvent, p *txswitch.Payment) {
	var fcode, fmsg *string
	if p.Failure != nil {
		fcode, fmsg = optString(p.Failure.Code), optString(p.Failure.Message)
	}
	var surcharge int64
	if p.Surcharge != nil {
		surcharge = p.Surcharge.Value
	}
	merchant := p.MerchantID
	if merchant == "" {
		merchant = ev.MerchantID
	}
	var cstatus, ccode *string
	if c := p.Cancellation; c != nil {
		cstatus = &c.Status
		if c.Failure != nil {
			ccode = &c.Failure.Code
		}
	}
	ver := ev.RowVersion()
	b.byName["payments"].put(p.ID, ver, p.ID, p.OrderID, merchant, p.Status, p.Provider, p.ProviderRef,
		p.Method, p.Amount.Currency, p.Amount.Value, surcharge, p.Authorized.Value, p.Captured.Value,
		p.Refunded.Value, p.CaptureMode, fcode, fmsg, int32(p.Attempt), p.CreatedAt, p.UpdatedAt, cstatus, ccode, int64(ver))
	// Embedded captures and refunds are as new as the payment's resource.
	for i := range p.Captures {
		b.putCapture(ev, &p.Captures[i])
	}
	for i := range p.Refunds {
		r := p.Refunds[i]
		if r.OrderID == "" {
			r.OrderID = p.OrderID
		}
		b.putRefund(ev, &r)
	}
}

func (b *batchRows) putCapture(ev *txswitch.OutboxEvent, c *txswitch.Capture) {
	ver := ev.RowVersion()
	b.byName["captures"].put(c.ID, ver, c.ID, c.PaymentID, ev.OrderID, ev.MerchantID,
		c.Amount.Value, c.Amount.Currency, c.Status, c.CreatedAt, int64(ver))
}

func (b *batchRows) putRefund(ev *txswitch.OutboxEvent, r *txswitch.Refund) {
	var fcode *string
	if r.Failure != nil {
		fcode = optString(r.Failure.Code)
	}
	orderID := r.OrderID
	if orderID == "" {
		orderID = ev.OrderID
	}
	ver := ev.RowVersion()
	b.byName["refunds"].put(r.ID, ver, r.ID, r.PaymentID, orderID, ev.MerchantID, r.Amount.Value,
		r.Amount.Currency, r.Reason, r.Channel, r.Status, fcode, r.CreatedAt, int64(ver))
}
