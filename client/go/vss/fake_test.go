package vss

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// fake is an in-process stand-in for one instance: it answers acquires
// with a fixed error or a grant, counts calls, and delivers the events it
// is told to on every open event stream.
type fake struct {
	vsspb.UnimplementedVssServer
	addr       string
	srv        *grpc.Server
	fail       error // returned by Acquire and AcquireBatch when set
	acquires   atomic.Int64
	batches    atomic.Int64
	batched    atomic.Int64 // acquires that came in batches
	lastAuth   atomic.Value
	id         string
	table      *vsspb.RoutingTable
	mu         sync.Mutex
	streams    []chan *vsspb.Event
	acks       atomic.Int64
	openEvents atomic.Int64
	keysMu     sync.Mutex
	keys       map[string]int // acquires by "slot/key", alone or in batches
}

func (f *fake) sawKey(slot uint32, key string) {
	f.keysMu.Lock()
	defer f.keysMu.Unlock()
	if f.keys == nil {
		f.keys = map[string]int{}
	}
	f.keys[fmt.Sprintf("%d/%s", slot, key)]++
}

// keysSeen is a copy of the acquires f got, by "slot/key".
func (f *fake) keysSeen() map[string]int {
	f.keysMu.Lock()
	defer f.keysMu.Unlock()
	out := make(map[string]int, len(f.keys))
	for k, n := range f.keys {
		out[k] = n
	}
	return out
}

func startFake(t *testing.T, id string) *fake {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{addr: l.Addr().String(), srv: grpc.NewServer(), id: id}
	vsspb.RegisterVssServer(f.srv, f)
	go func() { _ = f.srv.Serve(l) }()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fake) auth(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) > 0 {
		f.lastAuth.Store(v[0])
	}
}

func (f *fake) Acquire(ctx context.Context, r *vsspb.AcquireRequest) (*vsspb.AcquireReply, error) {
	f.auth(ctx)
	f.acquires.Add(1)
	f.sawKey(r.GetSlot(), r.GetKey())
	if f.fail != nil {
		return nil, f.fail
	}
	return &vsspb.AcquireReply{Granted: r.GetTokens(), Remaining: 7}, nil
}

func (f *fake) AcquireBatch(ctx context.Context, r *vsspb.AcquireBatchRequest) (*vsspb.AcquireBatchReply, error) {
	f.batches.Add(1)
	f.batched.Add(int64(len(r.GetRequests())))
	if f.fail != nil {
		return nil, f.fail
	}
	out := &vsspb.AcquireBatchReply{}
	for _, req := range r.GetRequests() {
		f.sawKey(req.GetSlot(), req.GetKey())
		out.Outcomes = append(out.Outcomes, &vsspb.AcquireOutcome{Outcome: &vsspb.AcquireOutcome_Reply{
			Reply: &vsspb.AcquireReply{Granted: req.GetTokens(), Remaining: 7}}})
	}
	return out, nil
}

func (f *fake) WatchRouting(_ *vsspb.WatchRoutingRequest, s grpc.ServerStreamingServer[vsspb.RoutingUpdate]) error {
	if f.table == nil {
		return status.Error(codes.Unimplemented, "no routing here")
	}
	if err := s.Send(&vsspb.RoutingUpdate{Instance: f.id, Table: f.table}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (f *fake) Events(s grpc.BidiStreamingServer[vsspb.ClientMessage, vsspb.Event]) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "the first message on an event stream must be a Hello")
	}
	if first.GetHello().GetClientId() == "" {
		return status.Error(codes.InvalidArgument, "`client_id` must be 1-128 bytes, got 0")
	}
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	events := make(chan *vsspb.Event, 16)
	f.mu.Lock()
	f.streams = append(f.streams, events)
	f.mu.Unlock()
	f.openEvents.Add(1)
	defer f.openEvents.Add(-1)
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if m.GetAck() != nil {
				f.acks.Add(1)
			}
		}
	}()
	for {
		select {
		case e := <-events:
			if err := s.Send(e); err != nil {
				return err
			}
		case <-recvDone:
			return nil // the client closed its side: end ours
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

// deliver sends e on every open event stream.
func (f *fake) deliver(e *vsspb.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.streams {
		s <- e
	}
}
