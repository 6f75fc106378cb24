package api

import (
	"context"
	"encoding/json"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

// nopService answers every call with a fixed reply, so the benchmarks
// measure the HTTP layer only.
type nopService struct{ *fakeService }

var nopReply = txswitch.Reply{Status: 201, Body: []byte(`{"id":"ord_1","status":"created"}`)}

func (nopService) Authenticate(context.Context, string) (string, error) { return "m1", nil }
func (nopService) CreateOrder(context.Context, txswitch.Caller, txswitch.CreateOrderRequest) (txswitch.Reply, error) {
	return nopReply, nil
}
func (nopService) GetOrder(context.Context, txswitch.Caller, string) (txswitch.Reply, error) {
	return nopReply, nil
}

func BenchmarkCreateOrderHandler(b *testing.B) {
	h := New(Options{Service: nopService{newFakeService()}}).Handler()
	body := []byte(orderBody)
	b.ReportAllocs()
	for b.Loop() {
		if fc := serveDirect(h, "POST", "/v1/orders", body); fc.Response.StatusCode() != 201 {
			b.Fatal(fc.Response.StatusCode())
		}
	}
}

func BenchmarkGetOrderHandler(b *testing.B) {
	h := New(Options{Service: nopService{newFakeService()}}).Handler()
	b.ReportAllocs()
	for b.Loop() {
		if fc := serveDirect(h, "GET", "/v1/orders/ord_1", nil); fc.Response.StatusCode() != 201 {
			b.Fatal(fc.Response.StatusCode())
		}
	}
}

func BenchmarkDecodeStrict(b *testing.B) {
	body := []byte(orderBody)
	b.ReportAllocs()
	for b.Loop() {
		var v txswitch.CreateOrderRequest
		if err := decodeStrict(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePlain is encoding/json alone, for comparison.
func BenchmarkDecodePlain(b *testing.B) {
	body := []byte(orderBody)
	b.ReportAllocs()
	for b.Loop() {
		var v txswitch.CreateOrderRequest
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}
