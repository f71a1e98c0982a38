package vss

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// Every test closes what it opens: no goroutine may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOwnerThenStandbyThenTheRest(t *testing.T) {
	r := newRouting(3)
	r.update(0, &vsspb.RoutingUpdate{Instance: "a"})
	r.update(1, &vsspb.RoutingUpdate{Instance: "b"})
	r.update(2, &vsspb.RoutingUpdate{Instance: "c", Table: &vsspb.RoutingTable{Epoch: 3, Leader: "a",
		Routes: []*vsspb.SlotRoute{{Slot: 4, Owner: "c", Standby: "b"}}}})
	if got := r.order(4, "", 3); !equalInts(got, []int{2, 1, 0}) {
		t.Fatalf("order(4) = %v", got)
	}
	// A slot not split: the key does not matter.
	if got := r.order(4, "alice", 3); !equalInts(got, []int{2, 1, 0}) {
		t.Fatalf("order(4, alice) = %v", got)
	}
	if r.first(4, "", 3) != 2 || r.first(5, "", 3) != 0 {
		t.Fatalf("first: %d %d", r.first(4, "", 3), r.first(5, "", 3))
	}
	if got := r.order(5, "", 3); !equalInts(got, []int{0, 1, 2}) {
		t.Fatalf("a slot without a route: %v", got)
	}
	if got := r.order(NoSlot, "", 3); !equalInts(got, []int{0, 1, 2}) {
		t.Fatalf("no slot: %v", got)
	}
}

func TestOnlyNewerTablesReplaceTheHeldOne(t *testing.T) {
	held := &vsspb.RoutingTable{Epoch: 3, Leader: "a"}
	if newer(&vsspb.RoutingTable{Epoch: 2, Leader: "z"}, held) {
		t.Fatal("an older epoch replaced the held table")
	}
	if !newer(&vsspb.RoutingTable{Epoch: 3, Leader: "b"}, held) {
		t.Fatal("ties go to the higher leader id, as on the servers")
	}
	if !newer(held, nil) {
		t.Fatal("any table replaces none")
	}
}

func TestRepeatsAreCaughtAndTheWindowIsBounded(t *testing.T) {
	s := newSeen(2)
	steps := []struct {
		slot  uint32
		id    uint64
		first bool
	}{{1, 10, true}, {1, 10, false}, {2, 10, true}, {1, 11, true}, {1, 10, true}}
	for i, st := range steps {
		if got := s.first(st.slot, st.id); got != st.first {
			t.Fatalf("step %d: first(%d, %d) = %v", i, st.slot, st.id, got)
		}
	}
	if len(s.set) != 2 {
		t.Fatalf("window holds %d", len(s.set))
	}
}

func TestInstanceFailureCodesMatchTheRustClient(t *testing.T) {
	for _, c := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown} {
		if !isInstanceFailure(c) {
			t.Errorf("%v is an instance failure", c)
		}
	}
	for _, c := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition,
		codes.ResourceExhausted, codes.PermissionDenied, codes.Unauthenticated, codes.Internal} {
		if isInstanceFailure(c) {
			t.Errorf("%v is a request error", c)
		}
	}
}

func TestRequestErrorsAreNotRetriedElsewhere(t *testing.T) {
	a, b := startFake(t, "a"), startFake(t, "b")
	a.fail = status.Error(codes.NotFound, "slot 42 is not configured")
	c := newClient(t, WithEndpoints(a.addr, b.addr))
	defer c.Close()
	_, err := c.Acquire(context.Background(), 42, AcquireOptions{})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *vss.Error, got %T %v", err, err)
	}
	if e.Code != codes.NotFound || e.Slot != 42 || e.Message != "slot 42 is not configured" || e.Endpoint != a.addr {
		t.Fatalf("error = %#v", e)
	}
	if !strings.Contains(err.Error(), "acquire slot 42: NOT_FOUND: slot 42 is not configured") {
		t.Fatalf("message: %v", err)
	}
	if n := b.acquires.Load(); n != 0 {
		t.Fatalf("the request error was retried on the other instance (%d calls)", n)
	}
}

func TestInstanceFailuresGoToTheNextInstance(t *testing.T) {
	a, b := startFake(t, "a"), startFake(t, "b")
	a.fail = status.Error(codes.Unavailable, "going away")
	c := newClient(t, WithEndpoints(a.addr, b.addr))
	defer c.Close()
	g, err := c.Acquire(context.Background(), 0, AcquireOptions{Tokens: 3})
	if err != nil || g.Granted != 3 {
		t.Fatalf("grant %v, err %v", g, err)
	}
	if a.acquires.Load() != 1 || b.acquires.Load() != 1 {
		t.Fatalf("calls: a %d, b %d", a.acquires.Load(), b.acquires.Load())
	}
}

func TestTheOwnerIsCalledFirst(t *testing.T) {
	a, b := startFake(t, "a"), startFake(t, "b")
	table := &vsspb.RoutingTable{Epoch: 1, Leader: "a", Routes: []*vsspb.SlotRoute{{Slot: 0, Owner: "b", Standby: "a"}}}
	a.table, b.table = table, table
	c := newClient(t, WithEndpoints(a.addr, b.addr))
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Routing() == nil || c.routing.first(0, "", 2) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the routing table never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 5 {
		if _, err := c.Acquire(context.Background(), 0, AcquireOptions{Tokens: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if a.acquires.Load() != 0 || b.acquires.Load() != 5 {
		t.Fatalf("calls: a %d, b (the owner) %d", a.acquires.Load(), b.acquires.Load())
	}
}

func TestNoInstanceReachable(t *testing.T) {
	a := startFake(t, "a")
	addr := a.addr
	a.srv.Stop()
	c := newClient(t, WithEndpoints(addr), WithTimeout(300*time.Millisecond))
	defer c.Close()
	_, err := c.Acquire(context.Background(), 0, AcquireOptions{})
	var e *Error
	if !errors.As(err, &e) || !e.Unreachable() || len(e.Failures) == 0 {
		t.Fatalf("want an unreachable *vss.Error, got %v", err)
	}
}

func TestConcurrentAcquiresShareBatches(t *testing.T) {
	a := startFake(t, "a")
	c := newClient(t, WithEndpoints(a.addr))
	defer c.Close()
	var wg sync.WaitGroup
	const n = 500
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			g, err := c.Acquire(context.Background(), 0, AcquireOptions{Tokens: 2})
			if err == nil && g.Granted != 2 {
				err = errors.New("wrong grant")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	single, batches, batched := a.acquires.Load(), a.batches.Load(), a.batched.Load()
	if single+batched != n || batches == 0 || batches >= batched {
		t.Fatalf("%d acquires alone, %d in %d batches", single, batched, batches)
	}
	t.Logf("%d acquires alone, %d in %d batches", single, batched, batches)
}

func TestTheTokenGoesOnEveryCall(t *testing.T) {
	a := startFake(t, "a")
	c := newClient(t, WithEndpoints(a.addr), WithToken("s3cret-0123456789"))
	defer c.Close()
	if _, err := c.Acquire(context.Background(), 0, AcquireOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := a.lastAuth.Load(); got != "Bearer s3cret-0123456789" {
		t.Fatalf("authorization = %v", got)
	}
}

func TestBadSettingsNameWhatIsWrong(t *testing.T) {
	cases := []struct {
		opts []Option
		want string
	}{
		{nil, "no endpoints given"},
		{[]Option{WithEndpoints("a:1"), WithTLS([]byte("not pem"))}, "vss: TLS CA: no PEM certificate"},
		{[]Option{WithEndpoints("a:1"), WithClientCertificate([]byte("x"), []byte("y"))}, "needs the CA"},
		{[]Option{WithEndpoints("a:1"), WithToken("bad\ntoken")}, "token: not printable ASCII"},
		{[]Option{WithEndpoints("a:1"), WithTimeout(0)}, "timeout must be above 0"},
		{[]Option{WithEndpoints("https://a:1")}, "give host:port"},
	}
	for _, tc := range cases {
		_, err := New(tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

func TestASubscriptionHandsEachMessageOnceAndAcksEveryCopy(t *testing.T) {
	a, b := startFake(t, "a"), startFake(t, "b")
	c := newClient(t, WithEndpoints(a.addr, b.addr))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	e := &vsspb.Event{Slot: 10, MessageId: 99, Payload: []byte("hello")}
	a.deliver(e)
	b.deliver(e)
	a.deliver(&vsspb.Event{Slot: 10, MessageId: 100, Payload: []byte("second")})
	var got []string
	for range 2 {
		d, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d.Payload))
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got[0] != "hello" || got[1] != "second" {
		t.Fatalf("got %v", got)
	}
	// No third message: the copy from the other instance is not handed out
	// again, but acknowledged there too.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if d, err := sub.Next(short); err == nil {
		t.Fatalf("a third message: %q", d.Payload)
	}
	for a.acks.Load()+b.acks.Load() < 3 {
		if ctx.Err() != nil {
			t.Fatalf("acks: a %d, b %d", a.acks.Load(), b.acks.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); err != io.EOF {
		t.Fatalf("after Close: %v", err)
	}
}

func TestASubscriptionRefusedForTheRequestSaysWhy(t *testing.T) {
	a := startFake(t, "a")
	c := newClient(t, WithEndpoints(a.addr))
	defer c.Close()
	_, err := c.Subscribe(context.Background(), "")
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || !strings.Contains(e.Message, "client_id") {
		t.Fatalf("got %v", err)
	}
}

func TestCloseStopsEverythingAndLaterCallsSayClosed(t *testing.T) {
	a := startFake(t, "a")
	a.table = &vsspb.RoutingTable{Epoch: 1, Leader: "a"}
	before := goleak.IgnoreCurrent()
	c := newClient(t, WithEndpoints(a.addr))
	ctx := context.Background()
	if _, err := c.Subscribe(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { _, _ = c.Acquire(ctx, 0, AcquireOptions{}) })
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, 0, AcquireOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	// The subscription left open ended with the client, and so did every
	// goroutine the client started (the fake server's are older).
	if err := goleak.Find(before); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("a second Close:", err)
	}
}

func TestTheCallersContextBoundsTheCall(t *testing.T) {
	a := startFake(t, "a")
	c := newClient(t, WithEndpoints(a.addr))
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Acquire(ctx, 0, AcquireOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// restartFake stops f's server and serves the same fake again on the
// same address, as an instance restarted on its ports.
func restartFake(t *testing.T, f *fake) {
	t.Helper()
	f.srv.Stop()
	f.mu.Lock()
	f.streams = nil
	f.mu.Unlock()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.srv = grpc.NewServer()
	vsspb.RegisterVssServer(f.srv, f)
	go func() { _ = f.srv.Serve(l) }()
	t.Cleanup(f.srv.Stop)
}

func TestASubscriptionReopensAfterARestart(t *testing.T) {
	a := startFake(t, "a")
	c := newClient(t, WithEndpoints(a.addr))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	restartFake(t, a)
	reopened := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.streams) > 0
	}
	for !reopened() {
		if ctx.Err() != nil {
			t.Fatal("the stream was not reopened")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.deliver(&vsspb.Event{Slot: 10, MessageId: 7, Payload: []byte("after the restart")})
	d, err := sub.Next(ctx)
	if err != nil || string(d.Payload) != "after the restart" {
		t.Fatalf("got %v, %v", d, err)
	}
}
