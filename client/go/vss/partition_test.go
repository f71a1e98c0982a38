package vss

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// partitionVector is one entry of client/conformance/partitions.json.
type partitionVector struct {
	Key       string         `json:"key"`
	FNV1a64   string         `json:"fnv1a64"`
	Partition map[string]int `json:"partition"` // partition count -> the key's partition
}

// partitionVectors reads the vectors every client checks its partition
// function against (the Rust tests read the same file).
func partitionVectors(t *testing.T) []partitionVector {
	t.Helper()
	path := filepath.Join("..", "..", "conformance", "partitions.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("client/conformance/partitions.json: %v", err)
	}
	var doc struct {
		Vectors []partitionVector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("client/conformance/partitions.json: %v", err)
	}
	if len(doc.Vectors) < 9 {
		t.Fatalf("client/conformance/partitions.json: %d vectors, want at least 9", len(doc.Vectors))
	}
	return doc.Vectors
}

func TestThePartitionFunctionMatchesTheSharedVectors(t *testing.T) {
	for _, v := range partitionVectors(t) {
		if got := fmt.Sprintf("%016x", fnv1a64(v.Key)); got != v.FNV1a64 {
			t.Errorf("fnv1a64(%q) = %s, want %s", v.Key, got, v.FNV1a64)
		}
		if len(v.Partition) == 0 {
			t.Errorf("%q: no partitions given", v.Key)
		}
		for count, want := range v.Partition {
			n, err := strconv.Atoi(count)
			if err != nil {
				t.Fatalf("%q: partition count %q: %v", v.Key, count, err)
			}
			if got := partitionOf(v.Key, n); got != want {
				t.Errorf("partitionOf(%q, %d) = %d, want %d", v.Key, n, got, want)
			}
		}
		if partitionOf(v.Key, 0) != 0 {
			t.Errorf("partitionOf(%q, 0) is not 0", v.Key)
		}
	}
}

// partitionedRoute is slot's route split into n partitions, partition p
// owned by ids[p % 3] with ids[(p+1) % 3] its standby; the slot's own
// route is the empty key's partition's, as the runtime makes it.
func partitionedRoute(slot uint32, n int, ids []string) *vsspb.SlotRoute {
	route := &vsspb.SlotRoute{Slot: slot}
	for p := range n {
		route.Partitions = append(route.Partitions, &vsspb.PartitionRoute{
			Owner: ids[p%len(ids)], Standby: ids[(p+1)%len(ids)]})
	}
	empty := route.Partitions[partitionOf("", n)]
	route.Owner, route.Standby = empty.GetOwner(), empty.GetStandby()
	return route
}

func TestAKeyedCallIsRoutedToItsPartitionsOwner(t *testing.T) {
	ids := []string{"a", "b", "c"}
	r := newRouting(3)
	for i, id := range ids {
		r.update(i, &vsspb.RoutingUpdate{Instance: id})
	}
	r.update(0, &vsspb.RoutingUpdate{Instance: "a", Table: &vsspb.RoutingTable{Epoch: 3, Leader: "a",
		Routes: []*vsspb.SlotRoute{partitionedRoute(4, 16, ids)}}})
	for _, v := range partitionVectors(t) {
		// The partition is the shared vector's, not this client's function:
		// a wrong hash fails here too.
		p := v.Partition["16"]
		owner, standby := p%3, (p+1)%3
		want := []int{owner, standby, 3 - owner - standby}
		if got := r.first(4, v.Key, 3); got != owner {
			t.Errorf("first(4, %q) = %d, want %d (partition %d)", v.Key, got, owner, p)
		}
		if got := r.order(4, v.Key, 3); !equalInts(got, want) {
			t.Errorf("order(4, %q) = %v, want %v (partition %d)", v.Key, got, want, p)
		}
	}
}

// partitionedFakes starts fakes a, b, c whose table splits slot 4 into 16
// partitions and slot 5 into 7 (see partitionedRoute), and a client of
// them that holds that table.
func partitionedFakes(t *testing.T, opts ...Option) ([]*fake, *Client) {
	t.Helper()
	ids := []string{"a", "b", "c"}
	table := &vsspb.RoutingTable{Epoch: 1, Leader: "a", Members: ids, Routes: []*vsspb.SlotRoute{
		partitionedRoute(4, 16, ids), partitionedRoute(5, 7, ids)}}
	var fakes []*fake
	var endpoints []string
	for _, id := range ids {
		f := startFake(t, id)
		f.table = table
		fakes = append(fakes, f)
		endpoints = append(endpoints, f.addr)
	}
	c := newClient(t, append([]Option{WithEndpoints(endpoints...)}, opts...)...)
	deadline := time.Now().Add(5 * time.Second)
	for !routingKnown(c) {
		if time.Now().After(deadline) {
			c.Close()
			t.Fatal("the routing table and the instance ids never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fakes, c
}

func routingKnown(c *Client) bool {
	c.routing.mu.RLock()
	defer c.routing.mu.RUnlock()
	if c.routing.held == nil {
		return false
	}
	for _, id := range c.routing.ids {
		if id == "" {
			return false
		}
	}
	return true
}

// wantAtOwners is, per fake, the acquires it must have got when each
// vector's key was acquired times times on slots 4 (16 partitions) and 5
// (7): all at the owner of the key's partition, as the vectors give it.
func wantAtOwners(vectors []partitionVector, times int) []map[string]int {
	want := []map[string]int{{}, {}, {}}
	for _, v := range vectors {
		want[v.Partition["16"]%3][fmt.Sprintf("4/%s", v.Key)] += times
		want[v.Partition["7"]%3][fmt.Sprintf("5/%s", v.Key)] += times
	}
	return want
}

func checkAtOwners(t *testing.T, fakes []*fake, want []map[string]int) {
	t.Helper()
	for i, f := range fakes {
		got := f.keysSeen()
		if len(got) != len(want[i]) {
			t.Errorf("%s got acquires %v, want %v", f.id, got, want[i])
			continue
		}
		for k, n := range want[i] {
			if got[k] != n {
				t.Errorf("%s got acquires %v, want %v", f.id, got, want[i])
				break
			}
		}
	}
}

func TestAKeyedAcquireGoesToItsPartitionsOwner(t *testing.T) {
	vectors := partitionVectors(t)
	fakes, c := partitionedFakes(t)
	defer c.Close()
	for _, v := range vectors {
		for _, slot := range []uint32{4, 5} {
			if _, err := c.Acquire(context.Background(), slot, AcquireOptions{Key: v.Key, Tokens: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkAtOwners(t, fakes, wantAtOwners(vectors, 1))
	for _, f := range fakes {
		if f.batches.Load() != 0 {
			t.Fatalf("%s got %d batches from acquires made one at a time", f.id, f.batches.Load())
		}
	}
}

func TestCoalescedKeyedAcquiresGoToTheirPartitionsOwner(t *testing.T) {
	vectors := partitionVectors(t)
	fakes, c := partitionedFakes(t)
	defer c.Close()
	const times = 20
	var wg sync.WaitGroup
	errs := make(chan error, len(vectors)*2*times)
	for range times {
		for _, v := range vectors {
			for _, slot := range []uint32{4, 5} {
				wg.Go(func() {
					g, err := c.Acquire(context.Background(), slot, AcquireOptions{Key: v.Key, Tokens: 1})
					if err == nil && g.Granted != 1 {
						err = fmt.Errorf("slot %d key %q: granted %d", slot, v.Key, g.Granted)
					}
					if err != nil {
						errs <- err
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkAtOwners(t, fakes, wantAtOwners(vectors, times))
	var batched int64
	for _, f := range fakes {
		batched += f.batched.Load()
	}
	if batched == 0 {
		t.Fatal("no acquire went in a batch: the lanes were not exercised")
	}
	t.Logf("%d of %d acquires in batches", batched, len(vectors)*2*times)
}
