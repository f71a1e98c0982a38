package vss

import (
	"context"
	"testing"

	"github.com/vss-dev/vss/client/go/vsspb"
)

func change(kind vsspb.ServiceChange_Kind, addr string, updated, expires uint64) *vsspb.ServiceChange {
	return &vsspb.ServiceChange{Kind: kind, Service: &vsspb.Service{App: "checkout", Address: addr, UpdatedMs: updated, ExpiresMs: expires}}
}

// Three instances report the same registry changes; the watch hands each
// once, and an instance that has not heard of a renewal cannot expire the
// renewed entry.
func TestAServiceWatchHandsEachChangeOnce(t *testing.T) {
	items := make(chan *vsspb.ServiceChange, 16)
	ended := make(chan struct{})
	close(ended)
	w := &ServiceWatch{s: &streams[*vsspb.ServiceChange]{items: items, cancel: func() {}, ended: ended},
		known: map[[2]string]*vsspb.Service{}}
	const A, R, E = vsspb.ServiceChange_ADDED, vsspb.ServiceChange_RENEWED, vsspb.ServiceChange_EXPIRED
	for _, c := range []*vsspb.ServiceChange{
		change(A, "10.0.0.1:80", 100, 200), // instance 1
		change(A, "10.0.0.1:80", 100, 200), // instance 2, same entry
		change(R, "10.0.0.1:80", 150, 250), // renewed
		change(E, "10.0.0.1:80", 100, 200), // instance 3 has not heard of the renewal
		change(A, "10.0.0.1:80", 150, 250), // instance 3 catches up
		change(E, "10.0.0.1:80", 150, 250), // expired for real
		change(E, "10.0.0.1:80", 150, 250), // and again from another instance
	} {
		items <- c
	}
	close(items)
	var got []string
	ctx := context.Background()
	for {
		c, err := w.Next(ctx)
		if err != nil {
			break
		}
		got = append(got, c.GetKind().String())
	}
	want := []string{"ADDED", "RENEWED", "EXPIRED"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
