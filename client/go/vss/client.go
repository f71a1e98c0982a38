package vss

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// MaxPublishWait is the longest a publish may wait for deliveries: the
// largest slot timeout.
const MaxPublishWait = 60 * time.Second

const (
	// passes is the number of rounds over all instances before a call fails.
	passes = 2
	// retryPause is the pause between two rounds: a restarting instance or
	// a new routing table gets a moment before the last one.
	retryPause = 100 * time.Millisecond
	// reconnectMax bounds the pause between two connection attempts to an
	// instance that is down, so one that comes back is used again soon.
	reconnectMax = time.Second
)

type instance struct {
	endpoint string
	conn     *grpc.ClientConn
	stub     vsspb.VssClient
}

// Client is a client of one VSS cluster. It is safe for concurrent use.
// Close it to stop its goroutines and connections.
type Client struct {
	instances []*instance
	timeout   time.Duration
	routing   *routing
	batcher   *batcher // nil: acquires are sent on their own
	// acquiring counts acquires sent and not yet answered.
	acquiring atomic.Int64

	// ctx ends when the client closes; every goroutine the client starts
	// watches it and is counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns a client of the instances given with [WithEndpoints].
// Connections are made in the background, so New succeeds even when some
// instances are down; calls wait for none of them.
func New(opts ...Option) (*Client, error) {
	s := settings{timeout: DefaultTimeout, coalescing: true}
	for _, opt := range opts {
		if err := opt(&s); err != nil {
			return nil, err
		}
	}
	if len(s.endpoints) == 0 {
		return nil, errors.New("vss: no endpoints given (WithEndpoints)")
	}
	tlsConfig, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	transport := insecure.NewCredentials()
	if tlsConfig != nil {
		transport = credentials.NewTLS(tlsConfig)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   reconnectMax,
			},
			MinConnectTimeout: s.timeout,
		}),
	}
	if s.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{value: "Bearer " + s.token}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{timeout: s.timeout, ctx: ctx, cancel: cancel}
	for _, endpoint := range s.endpoints {
		conn, err := grpc.NewClient(endpoint, dial...)
		if err != nil {
			cancel()
			for _, i := range c.instances {
				_ = i.conn.Close()
			}
			return nil, fmt.Errorf("vss: invalid endpoint %q: %w", endpoint, err)
		}
		c.instances = append(c.instances, &instance{endpoint: endpoint, conn: conn, stub: vsspb.NewVssClient(conn)})
	}
	c.routing = newRouting(len(c.instances))
	for i, inst := range c.instances {
		c.spawn(func() { c.routing.watch(c.ctx, i, inst.stub) })
	}
	if s.coalescing {
		c.batcher = newBatcher(c)
	}
	return c, nil
}

// spawn runs f in a goroutine that Close waits for; false if the client
// is closed (f is not run).
func (c *Client) spawn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close stops every goroutine of the client (routing watches, acquire
// batching, subscriptions and watches) and closes its connections. Calls
// made afterwards return ErrClosed. Close it once done; a second Close
// does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	var errs []error
	for _, i := range c.instances {
		if err := i.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Endpoints returns the instances this client was given, in order.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.instances))
	for i, inst := range c.instances {
		out[i] = inst.endpoint
	}
	return out
}

// Routing returns the newest routing table any instance sent, or nil
// before one arrived.
func (c *Client) Routing() *vsspb.RoutingTable {
	t := c.routing.table()
	if t == nil {
		return nil
	}
	return proto.Clone(t).(*vsspb.RoutingTable)
}

// ctxOrClosed is the error of a call whose context ended (wrapping the
// context's error) or whose client closed; nil otherwise.
func (c *Client) ctxOrClosed(ctx context.Context, op string, slot int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vss: %s%s: %w", op, slotSuffix(slot), err)
	}
	if c.isClosed() {
		return ErrClosed
	}
	return nil
}

func slotSuffix(slot int) string {
	if slot == NoSlot {
		return ""
	}
	return fmt.Sprintf(" slot %d", slot)
}

// firstAnswer runs call on each instance in turn until one answers: the
// slot's owner first, then its standby, then the others (slot NoSlot: the
// order given). Instance failures move on to the next instance; a request
// error is returned at once. skip is an instance already tried (-1: none),
// left out of the first round.
//
// slot names the call's slot in errors; routed says whether the slot has
// an owner to call first (limiters and signals) or any instance serves it
// (the data slots, kept on every instance).
func firstAnswer[Req, Resp any](
	ctx context.Context, c *Client, op string, slot int, routed bool, limit time.Duration, skip int,
	req Req, call func(vsspb.VssClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	return keyedFirstAnswer(ctx, c, op, slot, routed, "", limit, skip, req, call)
}

// keyedFirstAnswer is firstAnswer for a call on slot's bucket key: in a
// slot split into partitions, key's partition's owner and standby are
// tried first.
func keyedFirstAnswer[Req, Resp any](
	ctx context.Context, c *Client, op string, slot int, routed bool, key string, limit time.Duration, skip int,
	req Req, call func(vsspb.VssClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	var zero Resp
	if err := c.ctxOrClosed(ctx, op, slot); err != nil {
		return zero, err
	}
	var failures []string
	for pass := range passes {
		if pass > 0 {
			select {
			case <-time.After(retryPause):
			case <-ctx.Done():
				return zero, c.ctxOrClosed(ctx, op, slot)
			case <-c.ctx.Done():
				return zero, ErrClosed
			}
		}
		orderBy := slot
		if !routed {
			orderBy = NoSlot
		}
		for _, i := range c.routing.order(orderBy, key, len(c.instances)) {
			if pass == 0 && i == skip {
				continue
			}
			inst := c.instances[i]
			attempt, cancel := context.WithTimeout(ctx, limit)
			resp, err := call(inst.stub, attempt, req)
			cancel()
			if err == nil {
				return resp, nil
			}
			if err := c.ctxOrClosed(ctx, op, slot); err != nil {
				return zero, err
			}
			st := status.Convert(err)
			if !isInstanceFailure(st.Code()) {
				return zero, &Error{Op: op, Slot: slot, Code: st.Code(), Message: st.Message(), Endpoint: inst.endpoint}
			}
			msg := st.Message()
			if st.Code() == codes.DeadlineExceeded {
				msg = fmt.Sprintf("no answer within %v", limit)
			}
			failure := inst.endpoint + ": " + msg
			if !contains(failures, failure) {
				failures = append(failures, failure)
			}
		}
	}
	return zero, &Error{Op: op, Slot: slot, Code: codes.Unavailable, Message: "no VSS instance reachable", Failures: failures}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nonZeroID is a random id above 0 (0 means "none" on the wire).
func nonZeroID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// Grant is what an acquire got.
type Grant struct {
	// Granted is the number of tokens granted; 0 when refused.
	Granted uint32
	// Remaining is the number of tokens left right after this call.
	Remaining uint64
	// ResetMs is the time until the next refill (token bucket) or until
	// there is room (leaky bucket), in milliseconds.
	ResetMs uint64
}

// Reset is ResetMs as a duration.
func (g Grant) Reset() time.Duration { return time.Duration(g.ResetMs) * time.Millisecond }

// AcquireOptions are the options of an acquire; the zero value takes the
// slot's tokensPerReq from its single bucket.
type AcquireOptions struct {
	// Key selects a per-caller bucket (a user id, an IP; at most 256
	// bytes); empty: the slot's single bucket.
	Key string
	// Tokens asked for; 0: the slot's tokensPerReq.
	Tokens uint32
}

func grantOf(r *vsspb.AcquireReply) Grant {
	return Grant{Granted: r.GetGranted(), Remaining: r.GetRemaining(), ResetMs: r.GetResetMs()}
}

// Acquire takes tokens from a limiter slot (token-bucket, leaky-bucket).
// It goes to the owner of opts.Key's partition first (the slot's owner
// when its keys are not split). Concurrent acquires of this client share
// AcquireBatch calls, one lane per owner.
func (c *Client) Acquire(ctx context.Context, slot uint32, opts AcquireOptions) (Grant, error) {
	req := &vsspb.AcquireRequest{Slot: slot, Key: opts.Key}
	if opts.Tokens > 0 {
		req.Tokens = proto.Uint32(opts.Tokens)
	}
	others := c.acquiring.Add(1) - 1
	defer c.acquiring.Add(-1)
	failedAt := -1
	if c.batcher != nil && others > 0 {
		owner := c.routing.first(int(slot), opts.Key, len(c.instances))
		outcome, err, sent := c.batcher.submit(ctx, owner, req)
		if sent {
			if err == nil {
				switch o := outcome.GetOutcome().(type) {
				case *vsspb.AcquireOutcome_Reply:
					return grantOf(o.Reply), nil
				case *vsspb.AcquireOutcome_Failure:
					code := codes.Code(o.Failure.GetCode())
					if !isInstanceFailure(code) {
						return Grant{}, &Error{Op: "acquire", Slot: int(slot), Code: code,
							Message: o.Failure.GetMessage(), Endpoint: c.instances[owner].endpoint}
					}
				}
			} else {
				if cerr := c.ctxOrClosed(ctx, "acquire", int(slot)); cerr != nil {
					return Grant{}, cerr
				}
				st := status.Convert(err)
				if !isInstanceFailure(st.Code()) {
					return Grant{}, &Error{Op: "acquire", Slot: int(slot), Code: st.Code(),
						Message: st.Message(), Endpoint: c.instances[owner].endpoint}
				}
			}
			// The owner could not answer: the others are tried one by one,
			// as for an acquire sent alone.
			failedAt = owner
		}
	}
	reply, err := keyedFirstAnswer(ctx, c, "acquire", int(slot), true, opts.Key, c.timeout, failedAt, req, vsspb.VssClient.Acquire)
	if err != nil {
		return Grant{}, err
	}
	return grantOf(reply), nil
}

// Call calls an operation of a custom slot type.
func (c *Client) Call(ctx context.Context, slot uint32, op string, payload []byte) ([]byte, error) {
	req := &vsspb.CallRequest{Slot: slot, Op: op, Payload: payload}
	reply, err := firstAnswer(ctx, c, "call", int(slot), true, c.timeout, -1, req, vsspb.VssClient.Call)
	if err != nil {
		return nil, err
	}
	return reply.GetPayload(), nil
}

// Published is what a publish achieved.
type Published struct {
	MessageID uint64
	// Delivered counts deliveries acknowledged in time.
	Delivered uint32
	// Failed counts deliveries that failed or timed out.
	Failed uint32
	// TakenBy is, on random slots, the client that took the message; ""
	// if none did.
	TakenBy string
}

// Publish sends message (at most 36 bytes) on a signal slot and waits for
// the deliveries (up to the slot's timeout). clientID identifies the
// publisher (a broadcast skips it); "" stays anonymous. The message id is
// chosen here and kept across retries, so a retry on another instance is
// the same message.
func (c *Client) Publish(ctx context.Context, slot uint32, message []byte, clientID string) (Published, error) {
	req := &vsspb.PublishRequest{Slot: slot, Message: message, ClientId: clientID, MessageId: nonZeroID()}
	reply, err := firstAnswer(ctx, c, "publish", int(slot), true, MaxPublishWait+c.timeout, -1, req, vsspb.VssClient.Publish)
	if err != nil {
		return Published{}, err
	}
	return Published{
		MessageID: reply.GetMessageId(),
		Delivered: reply.GetDelivered(),
		Failed:    reply.GetFailed(),
		TakenBy:   reply.GetTakenBy(),
	}, nil
}

// Register joins clientID to a multicast or random slot.
func (c *Client) Register(ctx context.Context, slot uint32, clientID string) error {
	req := &vsspb.MembershipRequest{Slot: slot, ClientId: clientID}
	_, err := firstAnswer(ctx, c, "register", int(slot), true, c.timeout, -1, req, vsspb.VssClient.Register)
	return err
}

// Deregister removes clientID from a multicast or random slot.
func (c *Client) Deregister(ctx context.Context, slot uint32, clientID string) error {
	req := &vsspb.MembershipRequest{Slot: slot, ClientId: clientID}
	_, err := firstAnswer(ctx, c, "deregister", int(slot), true, c.timeout, -1, req, vsspb.VssClient.Deregister)
	return err
}

// InstanceStatus is one instance's answer to Status.
type InstanceStatus struct {
	Endpoint string
	Reply    *vsspb.StatusReply
	// Err is set when the instance did not answer.
	Err error
}

// Status asks every instance at once for its status, in the order the
// endpoints were given: an instance that does not answer costs one
// timeout, not one per instance behind it.
func (c *Client) Status(ctx context.Context) ([]InstanceStatus, error) {
	if err := c.ctxOrClosed(ctx, "status", NoSlot); err != nil {
		return nil, err
	}
	out := make([]InstanceStatus, len(c.instances))
	var wg sync.WaitGroup
	for i, inst := range c.instances {
		out[i].Endpoint = inst.endpoint
		wg.Go(func() {
			attempt, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			reply, err := inst.stub.Status(attempt, &vsspb.StatusRequest{})
			if err != nil {
				st := status.Convert(err)
				out[i].Err = &Error{Op: "status", Slot: NoSlot, Code: st.Code(), Message: st.Message(), Endpoint: inst.endpoint}
				return
			}
			out[i].Reply = reply
		})
	}
	wg.Wait()
	return out, nil
}
