package pebblestore

import "encoding/binary"

// Key layout. Every per-group key carries the group id right after a one-byte
// prefix, so a group's keys are contiguous and another group is only another
// id (multi-raft is configuration, not a rewrite):
//
//	0x00 "node-id"                    node id (8 bytes BE)
//	0x01 group kindHardState          raftpb.HardState
//	0x01 group kindTrunc              index, term (8+8 BE) of the entry before the first
//	0x01 group kindSnapMeta           raftpb.SnapshotMetadata of the last snapshot
//	0x01 group kindSnapData           that snapshot's data blob
//	0x01 group kindMembership         membership record (see encodeMembership)
//	0x01 group kindApplied            state machine applied index (8 bytes BE)
//	0x01 group kindRestoring          index of a RestoreImage in progress (8 bytes BE)
//	0x01 group kindImage index seq    chunk seq of a state image staged for index
//	0x01 group kindImageDone index    size (8) of that image, once staged whole
//	0x01 group kindEntry index        raftpb.Entry, index big-endian so key order is log order
//	0x02 group userKey                state machine value
//
// The applied index lives outside the 0x02 range so that RestoreState can
// clear the state range with one DeleteRange without touching it.
const (
	prefixNode  byte = 0x00
	prefixGroup byte = 0x01
	prefixState byte = 0x02

	kindHardState  byte = 'h'
	kindTrunc      byte = 't'
	kindSnapMeta   byte = 's'
	kindSnapData   byte = 'd'
	kindMembership byte = 'm'
	kindApplied    byte = 'a'
	kindEntry      byte = 'e'
	kindImage      byte = 'i'
	kindImageDone  byte = 'j'
	kindRestoring  byte = 'r'
)

var nodeIDKey = []byte{prefixNode, 'n', 'o', 'd', 'e', '-', 'i', 'd'}

// groupKey returns prefixGroup|group|kind.
func groupKey(group uint64, kind byte) []byte {
	k := make([]byte, 0, 1+8+1+8)
	k = append(k, prefixGroup)
	k = binary.BigEndian.AppendUint64(k, group)
	return append(k, kind)
}

// entryKey returns the key of the entry at index.
func entryKey(group, index uint64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(group, kindEntry), index)
}

// entryIndex decodes the index from an entry key of any group.
func entryIndex(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-8:])
}

// entriesEnd is the exclusive upper bound of every entry key of group.
func entriesEnd(group uint64) []byte { return groupKey(group, kindEntry+1) }

// statePrefix returns prefixState|group; a state key is statePrefix+userKey.
func statePrefix(group uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixState}, group)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
// p is never all 0xff here (it starts with a prefix byte below 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	panic("prefixEnd: all 0xff prefix")
}
