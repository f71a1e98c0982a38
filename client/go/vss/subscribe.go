package vss

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vss-dev/vss/client/go/vsspb"
)

const (
	// resubscribeAfter is the wait before reopening a stream that broke.
	resubscribeAfter = 200 * time.Millisecond
	// dedupeWindow is the number of message ids a subscription remembers
	// to drop repeats.
	dedupeWindow = 16384
	// eventBuffer is the number of deliveries held between the streams
	// and the application.
	eventBuffer = 1024
	// closeTimeout is the longest Subscription.Close waits for the
	// instances to end their side.
	closeTimeout = 2 * time.Second
)

var errStreamClosed = errors.New("vss: event stream closed")

// Delivery is one event received on a subscription. Acknowledge it with
// [Delivery.Ack]; until then the publisher counts it as pending, and after
// the slot's timeout as failed.
type Delivery struct {
	Slot      uint32
	MessageID uint64
	Payload   []byte
	// Publisher is the client id of the publisher ("" if anonymous).
	Publisher string
	ack       func(uint64) error
}

// Ack confirms the delivery to the instance that sent it.
func (d *Delivery) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.ack(d.MessageID)
}

// Subscription is this client's event streams, one per instance, merged.
// Read it with Next; end it with Close.
type Subscription struct {
	events  chan *Delivery
	closing chan struct{}
	// ctx ends the streams at once: on Close after the grace period, or
	// when the client closes.
	ctx       context.Context
	cancel    context.CancelFunc
	followers sync.WaitGroup
	ended     chan struct{} // closed when every follower returned
	closeOnce sync.Once

	mu   sync.Mutex
	seen *seen
}

// Subscribe opens this client's event stream on every instance, as
// clientID (1-128 bytes, the same on every instance). slots limits which
// broadcast slots it hears (none: all); multicast and random deliveries
// follow registration instead. It returns once every instance answered,
// if at least one accepted the stream; streams to instances that are down,
// or that go down later, are reopened when they come back. A request error
// (a bad client id) is returned as it is.
func (c *Client) Subscribe(ctx context.Context, clientID string, slots ...uint32) (*Subscription, error) {
	if err := c.ctxOrClosed(ctx, "subscribe", NoSlot); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(c.ctx)
	s := &Subscription{
		events:  make(chan *Delivery, eventBuffer),
		closing: make(chan struct{}),
		ctx:     sctx,
		cancel:  cancel,
		ended:   make(chan struct{}),
		seen:    newSeen(dedupeWindow),
	}
	hello := &vsspb.ClientMessage{Kind: &vsspb.ClientMessage_Hello{Hello: &vsspb.Hello{ClientId: clientID, Slots: slots}}}
	firsts := make([]chan error, len(c.instances))
	for i, inst := range c.instances {
		firsts[i] = make(chan error, 1)
		s.followers.Add(1)
		if !c.spawn(func() {
			defer s.followers.Done()
			s.follow(inst, hello, firsts[i])
		}) {
			s.followers.Done()
			cancel()
			return nil, ErrClosed
		}
	}
	waiter := func() {
		s.followers.Wait()
		close(s.ended)
		close(s.events)
	}
	if !c.spawn(waiter) {
		go waiter() // the client closed meanwhile: the followers end at once
	}
	if err := firstOpenings(ctx, c, "subscribe", NoSlot, firsts); err != nil {
		s.cancel()
		<-s.ended
		return nil, err
	}
	return s, nil
}

// firstOpenings waits for the first opening of a stream on every
// instance: fine if one accepted; a request error (the same on every
// instance) is returned as it is; otherwise every instance was
// unreachable.
func firstOpenings(ctx context.Context, c *Client, op string, slot int, firsts []chan error) error {
	var failures []string
	accepted := false
	for i, first := range firsts {
		var err error
		select {
		case err = <-first:
		case <-ctx.Done():
			return c.ctxOrClosed(ctx, op, slot)
		case <-c.ctx.Done():
			return ErrClosed
		}
		if err == nil {
			accepted = true
			continue
		}
		st := status.Convert(err)
		if !isInstanceFailure(st.Code()) {
			return &Error{Op: op, Slot: slot, Code: st.Code(), Message: st.Message(), Endpoint: c.instances[i].endpoint}
		}
		failures = append(failures, c.instances[i].endpoint+": "+st.Message())
	}
	if !accepted {
		return &Error{Op: op, Slot: slot, Code: codes.Unavailable, Message: "no VSS instance reachable", Failures: failures}
	}
	return nil
}

// opened waits until the server answered the opening of a stream: nil
// when it accepted it, else the status it refused it with.
func opened(stream grpc.ClientStream) error {
	md, err := stream.Header()
	if err != nil {
		return err
	}
	if md == nil {
		// Ended without headers: the status comes with the first read.
		if err := stream.RecvMsg(new(vsspb.Event)); err != nil && err != io.EOF {
			return err
		}
		return status.Error(codes.Unavailable, "the stream ended as it opened")
	}
	return nil
}

func (s *Subscription) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// follow keeps this client's event stream open on one instance: opens it,
// reads it, and reopens it after it broke, until the subscription closes
// or the instance ends the stream itself (it dropped this client). The
// outcome of the first opening goes to first.
func (s *Subscription) follow(inst *instance, hello *vsspb.ClientMessage, first chan error) {
	reported := false
	report := func(err error) {
		if !reported {
			reported = true
			first <- err
		}
	}
	defer report(status.Error(codes.Unavailable, "subscription closed"))
	for {
		streamCtx, cancelStream := context.WithCancel(s.ctx)
		stream, err := inst.stub.Events(streamCtx)
		if err == nil {
			err = stream.Send(hello)
		}
		if err == nil {
			err = opened(stream)
		}
		if err != nil {
			cancelStream()
			report(err)
			if !isInstanceFailure(status.Code(err)) || s.ctx.Err() != nil {
				return
			}
		} else {
			report(nil)
			ended := s.read(streamCtx, stream)
			cancelStream()
			if ended || s.isClosing() || s.ctx.Err() != nil {
				return
			}
		}
		select {
		case <-time.After(resubscribeAfter):
		case <-s.closing:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// read forwards one stream's events until it ends. On Close, the request
// side is closed after the acks sent so far and the instance then ends
// the stream. Returns true if the instance ended the stream, false if it
// broke.
func (s *Subscription) read(ctx context.Context, stream vsspb.Vss_EventsClient) bool {
	var sendMu sync.Mutex
	sendClosed := false
	ack := func(id uint64) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		if sendClosed {
			return errStreamClosed
		}
		return stream.Send(&vsspb.ClientMessage{Kind: &vsspb.ClientMessage_Ack{Ack: &vsspb.Ack{MessageId: id}}})
	}
	done := make(chan struct{})
	var closer sync.WaitGroup
	closer.Go(func() {
		select {
		case <-s.closing:
			sendMu.Lock()
			sendClosed = true
			_ = stream.CloseSend()
			sendMu.Unlock()
		case <-done:
		case <-ctx.Done():
		}
	})
	defer func() {
		close(done) // first: the closer waits for it
		closer.Wait()
	}()
	for {
		e, err := stream.Recv()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if s.isClosing() {
			continue // undelivered events are dropped unacknowledged
		}
		d := &Delivery{Slot: e.GetSlot(), MessageID: e.GetMessageId(), Payload: e.GetPayload(), Publisher: e.GetPublisher(), ack: ack}
		select {
		case s.events <- d:
		case <-ctx.Done():
			return false
		}
	}
}

// Next returns the next message, once: a message that already came
// through another instance is acknowledged to the instance that sent it
// again and not handed out twice. It returns io.EOF once the subscription
// is closed or every stream has ended.
func (s *Subscription) Next(ctx context.Context) (*Delivery, error) {
	for {
		select {
		case d, ok := <-s.events:
			if !ok {
				return nil, io.EOF
			}
			s.mu.Lock()
			fresh := s.seen.first(d.Slot, d.MessageID)
			s.mu.Unlock()
			if fresh {
				return d, nil
			}
			_ = d.ack(d.MessageID)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close ends every stream cleanly: the acknowledgements already given have
// been sent, each instance is told the stream ends and closes its side
// (waiting at most 2 s). Undelivered events are dropped unacknowledged.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		select {
		case <-s.ended:
		case <-time.After(closeTimeout):
		}
		s.cancel()
		<-s.ended
	})
	return nil
}

// seen remembers the last capacity (slot, message id) pairs.
type seen struct {
	set      map[seenKey]struct{}
	order    []seenKey // ring
	next     int
	capacity int
}

type seenKey struct {
	slot uint32
	id   uint64
}

func newSeen(capacity int) *seen {
	return &seen{set: make(map[seenKey]struct{}, capacity), capacity: max(capacity, 1)}
}

// first is true the first time a pair is seen within the window.
func (s *seen) first(slot uint32, id uint64) bool {
	k := seenKey{slot, id}
	if _, dup := s.set[k]; dup {
		return false
	}
	s.set[k] = struct{}{}
	if len(s.order) < s.capacity {
		s.order = append(s.order, k)
		return true
	}
	delete(s.set, s.order[s.next])
	s.order[s.next] = k
	s.next = (s.next + 1) % s.capacity
	return true
}
