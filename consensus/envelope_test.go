package consensus

import (
	"bytes"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		key     propKey
		payload []byte
	}{
		{propKey{1, 2, 3}, []byte("hello")},
		{propKey{1 << 60, 1<<64 - 1, 1}, nil},
	} {
		k, p, err := decodeEnvelope(encodeEnvelope(tc.key, tc.payload))
		if err != nil || k != tc.key || !bytes.Equal(p, tc.payload) {
			t.Fatalf("round trip %+v: %+v %q %v", tc.key, k, p, err)
		}
	}
	for _, bad := range [][]byte{nil, {2, 1, 1, 1}, {1, 0x80}} {
		if _, _, err := decodeEnvelope(bad); err == nil {
			t.Fatalf("decoded bad envelope %x", bad)
		}
	}
}

func TestSnapshotDataRoundTrip(t *testing.T) {
	m := membership{Version: 1, MaxID: 9, Members: []Peer{{ID: 1, RaftAddr: "a", APIAddr: "b"}}}
	got, img, err := decodeSnapshotData(encodeSnapshotData(&m, []byte("image")))
	if err != nil || string(img) != "image" || got.MaxID != 9 || got.Members[0] != m.Members[0] {
		t.Fatalf("round trip: %+v %q %v", got, img, err)
	}
	if _, _, err := decodeSnapshotData([]byte{1, 200}); err == nil {
		t.Fatal("decoded a truncated snapshot")
	}
}

func TestMembershipNeverForgetsMaxID(t *testing.T) {
	var m membership
	m.upsert(Peer{ID: 3})
	m.upsert(Peer{ID: 1})
	m.remove(3)
	if m.MaxID != 3 || len(m.Members) != 1 || m.Members[0].ID != 1 {
		t.Fatalf("membership = %+v", m)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope(propKey{1, 2, 3}, []byte("x")))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, p, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		k2, p2, err := decodeEnvelope(encodeEnvelope(k, p))
		if err != nil || k2 != k || !bytes.Equal(p, p2) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

func FuzzDecodeSnapshotData(f *testing.F) {
	m := membership{Version: 1, MaxID: 2, Members: []Peer{{ID: 2}}}
	f.Add(encodeSnapshotData(&m, []byte("img")))
	f.Fuzz(func(t *testing.T, b []byte) {
		mem, img, err := decodeSnapshotData(b)
		if err != nil {
			return
		}
		mem2, img2, err := decodeSnapshotData(encodeSnapshotData(&mem, img))
		if err != nil || !bytes.Equal(img, img2) || mem2.MaxID != mem.MaxID || len(mem2.Members) != len(mem.Members) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}
