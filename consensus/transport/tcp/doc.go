// Package tcptransport carries raft messages between nodes over TCP for
// consensus.Node.
//
// Wire format, per message: uint32 big-endian length of what follows,
// uint64 big-endian raft group id, then the protobuf-encoded raftpb.Message.
// A MsgSnap whose state image is streamed (consensus/images.go) is followed
// by the image in chunks (uint32 length, bytes; 0 ends it, 0xFFFFFFFF
// aborts it), which the reader stages through its handler before it steps
// the message, so an image is bounded by neither the frame size nor memory.
// Frames above MaxFrameSize are refused on both sides (a reader closes the
// connection: its framing can no longer be trusted). Connections are
// one-way: each node dials each peer for its own messages and reads
// whatever its listener accepts.
//
// Each peer has one goroutine and a bounded queue. Send never blocks: when
// the queue is full the message is dropped and counted (raft retransmits;
// a dropped MsgSnap is reported as failed). A failed dial or write drops
// the batch, reports the peer unreachable, and reconnects with exponential
// backoff plus jitter. A message is never written twice. Logs are emitted on
// connection state changes only, never per message.
//
// Fault injection: SetFilter drops outbound messages to chosen peers (a
// partition or a lossy link), and Lookup finds an open transport of this
// process by its listen address, so package chaos can partition in-process
// clusters. Production code never sets a filter.
//
// Wiring (the transport exists before the node, which needs it):
//
//	tr, err := tcptransport.New(tcptransport.Config{ID: id, Group: g, ListenAddr: addr, Logger: log})
//	node, err := consensus.NewNode(consensus.Config{ID: id, Group: g, Transport: tr, ...})
//	tr.Start(node) // inbound frames and send reports now reach the node
//	...
//	node.Stop(); tr.Close()
package tcptransport
