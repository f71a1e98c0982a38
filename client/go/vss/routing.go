package vss

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// rewatchAfter is the wait before watching an instance's routing again
// after its stream broke.
const rewatchAfter = 250 * time.Millisecond

// routing is what the client knows of the cluster's routing: the newest
// table any instance sent, and which endpoint is which instance.
type routing struct {
	mu    sync.RWMutex
	held  *vsspb.RoutingTable
	ids   []string // instance id of each endpoint, "" until it said
	slots map[uint32]*vsspb.SlotRoute
}

func newRouting(instances int) *routing {
	return &routing{ids: make([]string, instances)}
}

// newer says whether offered replaces held: a higher epoch, or the same
// epoch from a higher leader id, as on the servers.
func newer(offered, held *vsspb.RoutingTable) bool {
	if held == nil {
		return true
	}
	if offered.GetEpoch() != held.GetEpoch() {
		return offered.GetEpoch() > held.GetEpoch()
	}
	return cmp.Compare(offered.GetLeader(), held.GetLeader()) > 0
}

func (r *routing) update(i int, u *vsspb.RoutingUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < len(r.ids) {
		r.ids[i] = u.GetInstance()
	}
	if t := u.GetTable(); t != nil && newer(t, r.held) {
		r.held = t
		r.slots = make(map[uint32]*vsspb.SlotRoute, len(t.GetRoutes()))
		for _, route := range t.GetRoutes() {
			r.slots[route.GetSlot()] = route
		}
	}
}

func (r *routing) table() *vsspb.RoutingTable {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.held
}

func (r *routing) position(id string) int {
	if id == "" {
		return -1
	}
	for i, known := range r.ids {
		if known == id {
			return i
		}
	}
	return -1
}

// order is the endpoint positions to try for slot's bucket key ("" for
// calls that name none): its owner, its standby, then every other
// instance in the order given (slot NoSlot: the order given). In a slot
// split into partitions, the owner and standby are those of key's
// partition.
func (r *routing) order(slot int, key string, count int) []int {
	out := make([]int, 0, count)
	r.mu.RLock()
	if route := r.slots[uint32(slot)]; slot != NoSlot && route != nil {
		owner, standby := ownerOf(route, key)
		for _, id := range []string{owner, standby} {
			if i := r.position(id); i >= 0 && !containsInt(out, i) {
				out = append(out, i)
			}
		}
	}
	r.mu.RUnlock()
	for i := range count {
		if !containsInt(out, i) {
			out = append(out, i)
		}
	}
	return out
}

// first is the endpoint position of the owner of slot's bucket key when
// known, else 0.
func (r *routing) first(slot int, key string, count int) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if route := r.slots[uint32(slot)]; route != nil {
		owner, _ := ownerOf(route, key)
		if i := r.position(owner); i >= 0 && i < count {
			return i
		}
	}
	return 0
}

func containsInt(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// watch follows instance i's routing updates until ctx ends, watching
// again after a break.
func (r *routing) watch(ctx context.Context, i int, stub vsspb.VssClient) {
	for {
		stream, err := stub.WatchRouting(ctx, &vsspb.WatchRoutingRequest{})
		if err == nil {
			for {
				update, err := stream.Recv()
				if err != nil {
					break
				}
				r.update(i, update)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rewatchAfter):
		}
	}
}
