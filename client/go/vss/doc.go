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
// Concurrent acquires of one client share AcquireBatch calls: an acquire
// made while another is in flight joins the next batch to the slot's owner,
// so under load many acquires cost one round trip; a lone acquire is sent
// at once.
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
