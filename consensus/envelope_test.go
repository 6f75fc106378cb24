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
	for _, tc := range []struct {
		name      string
		data      []byte
		wantImage bool
		image     string
	}{
		{"with image", encodeSnapshotData(&m, []byte("image")), true, "image"},
		{"with empty image", encodeSnapshotData(&m, nil), true, ""},
		{"metadata only", encodeSnapshotMeta(&m), false, ""},
		{"image streamed", encodeSnapshotStreamed(&m), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, img, hasImage, err := decodeSnapshotData(tc.data)
			if err != nil || hasImage != tc.wantImage || string(img) != tc.image || got.MaxID != 9 || got.Members[0] != m.Members[0] {
				t.Fatalf("round trip: %+v %q %t %v", got, img, hasImage, err)
			}
		})
	}
	if !snapshotStreamed(encodeSnapshotStreamed(&m)) || snapshotStreamed(encodeSnapshotMeta(&m)) || snapshotStreamed(encodeSnapshotData(&m, nil)) {
		t.Fatal("snapshotStreamed tells the envelopes apart wrongly")
	}
	for _, bad := range [][]byte{nil, {1, 200}, {4, 0}, append(encodeSnapshotMeta(&m), 'x'), append(encodeSnapshotStreamed(&m), 'x')} {
		if _, _, _, err := decodeSnapshotData(bad); err == nil {
			t.Fatalf("decoded bad snapshot data %x", bad)
		}
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
	f.Add(encodeSnapshotMeta(&m))
	f.Fuzz(func(t *testing.T, b []byte) {
		mem, img, hasImage, err := decodeSnapshotData(b)
		if err != nil {
			return
		}
		again := encodeSnapshotMeta(&mem)
		if hasImage {
			again = encodeSnapshotData(&mem, img)
		}
		mem2, img2, hasImage2, err := decodeSnapshotData(again)
		if err != nil || hasImage2 != hasImage || !bytes.Equal(img, img2) || mem2.MaxID != mem.MaxID || len(mem2.Members) != len(mem.Members) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}
