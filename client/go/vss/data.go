package vss

import (
	"context"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// Counter, register and registry slots live on every instance, so any
// instance answers; a call goes to the first instance that does, with the
// same failover as the limiters. An increment carries a request id chosen
// here and kept across retries, so a retry on another instance is counted
// once. Watches (registry changes, ticks) hold a stream on every instance
// and hand each change to the application once.

// watchBuffer is the number of changes held between the streams and the
// application.
const watchBuffer = 1024

// CounterValue is a counter slot's value: Increments - Decrements.
// Applied is false when a retried change had been applied before.
type CounterValue = vsspb.CounterValue

// Increment adds amount (at least 1; the server refuses 0) to a counter
// slot.
func (c *Client) Increment(ctx context.Context, slot uint32, amount uint64) (*CounterValue, error) {
	req := &vsspb.CounterChange{Slot: slot, Amount: proto.Uint64(amount), RequestId: nonZeroID()}
	return firstAnswer(ctx, c, "increment", int(slot), false, c.timeout, -1, req, vsspb.VssClient.Increment)
}

// Decrement subtracts amount (at least 1) from a counter slot; refused on
// a grow-only counter.
func (c *Client) Decrement(ctx context.Context, slot uint32, amount uint64) (*CounterValue, error) {
	req := &vsspb.CounterChange{Slot: slot, Amount: proto.Uint64(amount), RequestId: nonZeroID()}
	return firstAnswer(ctx, c, "decrement", int(slot), false, c.timeout, -1, req, vsspb.VssClient.Decrement)
}

// ReadCounter returns a counter slot's value as the first instance to
// answer holds it.
func (c *Client) ReadCounter(ctx context.Context, slot uint32) (*CounterValue, error) {
	req := &vsspb.ReadCounterRequest{Slot: slot}
	return firstAnswer(ctx, c, "read counter", int(slot), false, c.timeout, -1, req, vsspb.VssClient.ReadCounter)
}

// Set writes key in a register slot; the reply's version lets a later
// GetAtLeast read this write from any instance.
func (c *Client) Set(ctx context.Context, slot uint32, key string, value []byte) (*vsspb.WriteReply, error) {
	req := &vsspb.SetRequest{Slot: slot, Key: key, Value: value}
	return firstAnswer(ctx, c, "set", int(slot), false, c.timeout, -1, req, vsspb.VssClient.Set)
}

// Delete deletes key from a register slot.
func (c *Client) Delete(ctx context.Context, slot uint32, key string) (*vsspb.WriteReply, error) {
	req := &vsspb.DeleteRequest{Slot: slot, Key: key}
	return firstAnswer(ctx, c, "delete", int(slot), false, c.timeout, -1, req, vsspb.VssClient.Delete)
}

// Get reads key from a register slot.
func (c *Client) Get(ctx context.Context, slot uint32, key string) (*vsspb.GetReply, error) {
	return c.get(ctx, slot, key, nil)
}

// GetAtLeast reads key from an instance that has seen at least version of
// it (the reply of an earlier write): read-your-writes from any instance.
func (c *Client) GetAtLeast(ctx context.Context, slot uint32, key string, version *vsspb.Version) (*vsspb.GetReply, error) {
	return c.get(ctx, slot, key, version)
}

func (c *Client) get(ctx context.Context, slot uint32, key string, atLeast *vsspb.Version) (*vsspb.GetReply, error) {
	req := &vsspb.GetRequest{Slot: slot, Key: key, AtLeast: atLeast}
	return firstAnswer(ctx, c, "get", int(slot), false, c.timeout, -1, req, vsspb.VssClient.Get)
}

// ListKeys returns the live keys of a register slot starting with prefix,
// in key order; limit 0 means the server's bound (1000).
func (c *Client) ListKeys(ctx context.Context, slot uint32, prefix string, limit uint32) (*vsspb.ListKeysReply, error) {
	req := &vsspb.ListKeysRequest{Slot: slot, Prefix: prefix, Limit: limit}
	return firstAnswer(ctx, c, "list keys", int(slot), false, c.timeout, -1, req, vsspb.VssClient.ListKeys)
}

// Announce announces (or renews) address for app in a registry slot; it
// expires after ttl (0: the slot's defaultTtl) unless announced again.
func (c *Client) Announce(ctx context.Context, slot uint32, app, address string, ttl time.Duration) (*vsspb.AnnounceReply, error) {
	req := &vsspb.AnnounceRequest{Slot: slot, App: app, Address: address}
	if ttl > 0 {
		req.TtlMs = proto.Uint64(uint64(ttl.Milliseconds()))
	}
	return c.announce(ctx, req)
}

// AnnounceTTLMs is Announce with the TTL in milliseconds as the wire
// carries it, 0 included (which the server refuses).
func (c *Client) AnnounceTTLMs(ctx context.Context, slot uint32, app, address string, ttlMs uint64) (*vsspb.AnnounceReply, error) {
	return c.announce(ctx, &vsspb.AnnounceRequest{Slot: slot, App: app, Address: address, TtlMs: proto.Uint64(ttlMs)})
}

func (c *Client) announce(ctx context.Context, req *vsspb.AnnounceRequest) (*vsspb.AnnounceReply, error) {
	return firstAnswer(ctx, c, "announce", int(req.GetSlot()), false, c.timeout, -1, req, vsspb.VssClient.Announce)
}

// Withdraw removes address of app from a registry slot at once.
func (c *Client) Withdraw(ctx context.Context, slot uint32, app, address string) (*vsspb.WithdrawReply, error) {
	req := &vsspb.WithdrawRequest{Slot: slot, App: app, Address: address}
	return firstAnswer(ctx, c, "withdraw", int(slot), false, c.timeout, -1, req, vsspb.VssClient.Withdraw)
}

// ListServices returns the live entries of a registry slot (app empty:
// every app).
func (c *Client) ListServices(ctx context.Context, slot uint32, app string) ([]*vsspb.Service, error) {
	req := &vsspb.ListServicesRequest{Slot: slot, App: app}
	reply, err := firstAnswer(ctx, c, "list services", int(slot), false, c.timeout, -1, req, vsspb.VssClient.ListServices)
	if err != nil {
		return nil, err
	}
	return reply.GetServices(), nil
}

// streams is a server stream on every instance, merged.
type streams[T any] struct {
	items     chan T
	cancel    context.CancelFunc
	ended     chan struct{}
	closeOnce sync.Once
}

// followAll opens a server stream on every instance and keeps it open
// (reopened after a break) until closed. It succeeds once one instance
// accepted; a request error (a slot of another type) is returned as it
// is.
func followAll[T any](ctx context.Context, c *Client, op string, slot int,
	open func(context.Context, vsspb.VssClient) (grpc.ClientStream, func() (T, error), error)) (*streams[T], error) {
	if err := c.ctxOrClosed(ctx, op, slot); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(c.ctx)
	s := &streams[T]{items: make(chan T, watchBuffer), cancel: cancel, ended: make(chan struct{})}
	var followers sync.WaitGroup
	firsts := make([]chan error, len(c.instances))
	for i, inst := range c.instances {
		firsts[i] = make(chan error, 1)
		followers.Add(1)
		if !c.spawn(func() {
			defer followers.Done()
			keepOpen(sctx, inst, open, s.items, firsts[i])
		}) {
			followers.Done()
			cancel()
			return nil, ErrClosed
		}
	}
	waiter := func() {
		followers.Wait()
		close(s.ended)
		close(s.items)
	}
	if !c.spawn(waiter) {
		go waiter()
	}
	if err := firstOpenings(ctx, c, op, slot, firsts); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *streams[T]) close() {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.ended
	})
}

func (s *streams[T]) next(ctx context.Context) (T, error) {
	var zero T
	select {
	case item, ok := <-s.items:
		if !ok {
			return zero, io.EOF
		}
		return item, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// keepOpen keeps one server stream open on one instance, forwarding its
// items, until ctx ends or the instance refuses the request itself.
func keepOpen[T any](ctx context.Context, inst *instance,
	open func(context.Context, vsspb.VssClient) (grpc.ClientStream, func() (T, error), error),
	items chan T, first chan error) {
	reported := false
	report := func(err error) {
		if !reported {
			reported = true
			first <- err
		}
	}
	defer report(context.Canceled)
	for {
		streamCtx, cancelStream := context.WithCancel(ctx)
		stream, recv, err := open(streamCtx, inst.stub)
		if err == nil {
			err = opened(stream)
		}
		if err != nil {
			cancelStream()
			report(err)
			if !isInstanceFailure(statusCode(err)) || ctx.Err() != nil {
				return
			}
		} else {
			report(nil)
			for {
				item, err := recv()
				if err != nil {
					break
				}
				select {
				case items <- item:
				case <-ctx.Done():
					cancelStream()
					return
				}
			}
			cancelStream()
		}
		select {
		case <-time.After(resubscribeAfter):
		case <-ctx.Done():
			return
		}
	}
}

// TickWatch is the ticks of a tick slot; see [Client.WatchTicks].
type TickWatch struct {
	s    *streams[*vsspb.Tick]
	last uint64
	any  bool
}

// WatchTicks follows the ticks of a tick slot on every instance, each
// number once and in increasing order: a tick is handed out by whichever
// instance sends it first, so an instance going down skips nothing.
func (c *Client) WatchTicks(ctx context.Context, slot uint32) (*TickWatch, error) {
	s, err := followAll(ctx, c, "watch ticks", int(slot), func(ctx context.Context, stub vsspb.VssClient) (grpc.ClientStream, func() (*vsspb.Tick, error), error) {
		stream, err := stub.WatchTicks(ctx, &vsspb.WatchTicksRequest{Slot: slot})
		if err != nil {
			return nil, nil, err
		}
		return stream, stream.Recv, nil
	})
	if err != nil {
		return nil, err
	}
	return &TickWatch{s: s}, nil
}

// Next returns the next tick number above every one returned before;
// io.EOF once closed.
func (w *TickWatch) Next(ctx context.Context) (*vsspb.Tick, error) {
	for {
		t, err := w.s.next(ctx)
		if err != nil {
			return nil, err
		}
		if !w.any || t.GetNumber() > w.last {
			w.any, w.last = true, t.GetNumber()
			return t, nil
		}
	}
}

// Close ends the watch's streams.
func (w *TickWatch) Close() error {
	w.s.close()
	return nil
}

// ServiceWatch is the changes of a registry slot; see
// [Client.WatchServices].
type ServiceWatch struct {
	s     *streams[*vsspb.ServiceChange]
	known map[[2]string]*vsspb.Service
}

// WatchServices follows the changes of a registry slot's entries (app
// empty: every app): first every live entry as ADDED, then each addition,
// renewal and expiry once, whichever instance reports it first.
func (c *Client) WatchServices(ctx context.Context, slot uint32, app string) (*ServiceWatch, error) {
	s, err := followAll(ctx, c, "watch services", int(slot), func(ctx context.Context, stub vsspb.VssClient) (grpc.ClientStream, func() (*vsspb.ServiceChange, error), error) {
		stream, err := stub.WatchServices(ctx, &vsspb.ListServicesRequest{Slot: slot, App: app})
		if err != nil {
			return nil, nil, err
		}
		return stream, stream.Recv, nil
	})
	if err != nil {
		return nil, err
	}
	return &ServiceWatch{s: s, known: map[[2]string]*vsspb.Service{}}, nil
}

// Next returns the next change; io.EOF once closed.
func (w *ServiceWatch) Next(ctx context.Context) (*vsspb.ServiceChange, error) {
	for {
		change, err := w.s.next(ctx)
		if err != nil {
			return nil, err
		}
		svc := change.GetService()
		if svc == nil {
			continue
		}
		key := [2]string{svc.GetApp(), svc.GetAddress()}
		held, isHeld := w.known[key]
		var fresh bool
		switch change.GetKind() {
		case vsspb.ServiceChange_ADDED, vsspb.ServiceChange_RENEWED:
			fresh = !isHeld || svc.GetUpdatedMs() > held.GetUpdatedMs() ||
				(svc.GetUpdatedMs() == held.GetUpdatedMs() && svc.GetExpiresMs() > held.GetExpiresMs())
		case vsspb.ServiceChange_EXPIRED:
			// An instance that has not heard of a renewal yet must not
			// take away an entry another instance renewed.
			fresh = isHeld && held.GetUpdatedMs() <= svc.GetUpdatedMs()
		}
		if !fresh {
			continue
		}
		kind := vsspb.ServiceChange_ADDED
		switch {
		case change.GetKind() == vsspb.ServiceChange_EXPIRED:
			delete(w.known, key)
			kind = vsspb.ServiceChange_EXPIRED
		case isHeld:
			w.known[key] = svc
			kind = vsspb.ServiceChange_RENEWED
		default:
			w.known[key] = svc
		}
		return &vsspb.ServiceChange{Kind: kind, Service: svc}, nil
	}
}

// Close ends the watch's streams.
func (w *ServiceWatch) Close() error {
	w.s.close()
	return nil
}
