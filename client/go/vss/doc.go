// Package vss is the Go client of VSS clusters, with the guarantees of the
// Rust client vss-client.
//
// A [Client] is given every instance of a cluster and connects to all of
// them at once. It watches the routing table every instance publishes and
// sends each call to the slot's owner first, then its standby, then the
// others: an instance that is down or does not answer within the per-call
// timeout is skipped at once and the next one is tried. Errors the server
// gives for the request itself (an unknown slot, a slot of another type, a
// message over 36 bytes) are returned as they are, never retried on
// another instance, since another instance would give the same answer.
// Which gRPC codes count as "this instance cannot answer" is the same set
// as the Rust client's: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED and
// UNKNOWN.
//
// A limiter slot's keys may be split into partitions, each with its own
// owner and standby in the routing table; an acquire with a key goes to
// the owner of its key's partition first, then that partition's standby,
// then the others. A key's partition is FNV-1a 64 of its UTF-8 bytes
// modulo the slot's number of partitions, as in every VSS client.
//
// Concurrent acquires of one client share AcquireBatch calls: an acquire
// made while another is in flight joins the next batch to its key's owner
// (the slot's owner for a slot not split), so under load many acquires
// cost one round trip; a lone acquire is sent at once.
//
// A publish carries a message id chosen here, so a publish retried on
// another instance is the same message: the owner carries it out once. A
// [Subscription] holds an event stream on every instance (reopened when an
// instance comes back), hands each message to the application once, and
// acknowledges every copy to the instance that sent it.
//
// Every call takes a [context.Context]; errors from the server are
// [*Error] values carrying the gRPC code, the slot and the message (use
// [errors.As]). A Client is safe for concurrent use; [Client.Close] stops
// every goroutine it started.
package vss
