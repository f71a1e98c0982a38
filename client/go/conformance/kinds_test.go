package conformance

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vss "github.com/vss-dev/vss/client/go/vss"
)

// listener is one subscription whose application counts the messages it
// sees (by payload) and acknowledges every delivery.
type listener struct {
	id   string
	sub  *vss.Subscription
	mu   sync.Mutex
	seen map[string]int
	done chan struct{}
}

func listen(ctx context.Context, c *vss.Client, id string, slots ...uint32) (*listener, error) {
	sub, err := c.Subscribe(ctx, id, slots...)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", id, err)
	}
	l := &listener{id: id, sub: sub, seen: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			d, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			l.mu.Lock()
			l.seen[string(d.Payload)]++
			l.mu.Unlock()
			_ = d.Ack(context.Background())
		}
	}()
	return l, nil
}

func (l *listener) count(payload string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[payload]
}

func (l *listener) close() {
	_ = l.sub.Close()
	<-l.done
}

func closeAll(ls []*listener) {
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(l.close)
	}
	wg.Wait()
}

// waitSeen waits (at most 5 s) until every listener saw every payload,
// then 300 ms more for duplicates, and checks each saw each exactly want
// times.
func waitSeen(ls []*listener, payloads []string, want int) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		all := true
		for _, l := range ls {
			for _, p := range payloads {
				if l.count(p) == 0 {
					all = false
				}
			}
		}
		if all {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	for _, l := range ls {
		for _, p := range payloads {
			if got := l.count(p); got != want {
				return fmt.Errorf("%s's application saw %q %d times, expected %d", l.id, p, got, want)
			}
		}
	}
	return nil
}

func p(params map[string]any, name string) int { return int(toFloat(params[name])) }

func (r *runner) broadcastFanout(t *testing.T, params, expect map[string]any) error {
	ctx := context.Background()
	slot := uint32(p(params, "slot"))
	n := p(params, "subscribers")
	// Four clients share the subscriptions (each client: one connection
	// per instance), as several processes of an application would.
	var clients []*vss.Client
	for range 4 {
		c, err := vss.New(vss.WithEndpoints(r.c.endpoints()...))
		if err != nil {
			return err
		}
		defer c.Close()
		clients = append(clients, c)
	}
	ls := make([]*listener, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ls[i], errs[i] = listen(ctx, clients[i%len(clients)], fmt.Sprintf("%s/sub-%d", r.runID, i), slot)
		})
	}
	wg.Wait()
	var opened []*listener
	for i := range n {
		if errs[i] != nil {
			closeAll(opened)
			return errs[i]
		}
		opened = append(opened, ls[i])
	}
	defer closeAll(ls)
	time.Sleep(time.Duration(p(params, "settle_ms")) * time.Millisecond)
	var payloads []string
	for j := range p(params, "messages") {
		payload := fmt.Sprintf("%s/m%d", r.runID, j)
		payloads = append(payloads, payload)
		began := time.Now()
		pub, err := r.client(t).Publish(ctx, slot, []byte(payload), r.runID+"/publisher")
		if err != nil {
			return fmt.Errorf("publish %d: %w", j, err)
		}
		t.Logf("publish %d: delivered %d, failed %d in %v", j, pub.Delivered, pub.Failed, time.Since(began).Round(time.Millisecond))
		if int(pub.Delivered) != p(expect, "delivered") || int(pub.Failed) != p(expect, "failed") {
			return fmt.Errorf("publish %d: delivered %d, failed %d; expected %d and %d", j, pub.Delivered, pub.Failed,
				p(expect, "delivered"), p(expect, "failed"))
		}
	}
	return waitSeen(ls, payloads, p(expect, "copies_seen_by_application"))
}

func (r *runner) multicastDeregistration(t *testing.T, params, expect map[string]any) error {
	ctx := context.Background()
	c := r.client(t)
	slot := uint32(p(params, "slot"))
	var live []*listener
	defer func() { closeAll(live) }()
	for i := range p(params, "live") {
		id := fmt.Sprintf("%s/live-%d", r.runID, i)
		l, err := listen(ctx, c, id, slot)
		if err != nil {
			return err
		}
		live = append(live, l)
		if err := c.Register(ctx, slot, id); err != nil {
			return err
		}
		defer func() { _ = c.Deregister(ctx, slot, id) }()
	}
	for i := range p(params, "absent") {
		if err := c.Register(ctx, slot, fmt.Sprintf("%s/absent-%d", r.runID, i)); err != nil {
			return err
		}
	}
	time.Sleep(time.Duration(p(params, "settle_ms")) * time.Millisecond)
	before := expect["before_deregistration"].(map[string]any)
	after := expect["after_deregistration"].(map[string]any)
	tries := p(params, "dereg_tries")
	var payloads []string
	for j := range tries + 1 {
		want := before
		if j == tries {
			want = after
		}
		payload := fmt.Sprintf("%s/mc%d", r.runID, j)
		payloads = append(payloads, payload)
		pub, err := c.Publish(ctx, slot, []byte(payload), "")
		if err != nil {
			return fmt.Errorf("publish %d: %w", j, err)
		}
		t.Logf("publish %d: delivered %d, failed %d", j, pub.Delivered, pub.Failed)
		if int(pub.Delivered) != p(want, "delivered") || int(pub.Failed) != p(want, "failed") {
			return fmt.Errorf("publish %d: delivered %d, failed %d; expected %v", j, pub.Delivered, pub.Failed, want)
		}
	}
	return waitSeen(live, payloads, p(expect, "copies_seen_by_application"))
}

func (r *runner) randomSingleDelivery(t *testing.T, params, expect map[string]any) error {
	ctx := context.Background()
	c := r.client(t)
	slot := uint32(p(params, "slot"))
	members := map[string]*listener{}
	var ls []*listener
	defer func() { closeAll(ls) }()
	for i := range p(params, "members") {
		id := fmt.Sprintf("%s/member-%d", r.runID, i)
		l, err := listen(ctx, c, id, slot)
		if err != nil {
			return err
		}
		ls = append(ls, l)
		members[id] = l
		if err := c.Register(ctx, slot, id); err != nil {
			return err
		}
		defer func() { _ = c.Deregister(ctx, slot, id) }()
	}
	time.Sleep(time.Duration(p(params, "settle_ms")) * time.Millisecond)
	takers := map[string]string{} // payload -> taker
	distinct := map[string]bool{}
	for j := range p(params, "messages") {
		payload := fmt.Sprintf("%s/r%d", r.runID, j)
		pub, err := c.Publish(ctx, slot, []byte(payload), "")
		if err != nil {
			return fmt.Errorf("publish %d: %w", j, err)
		}
		if int(pub.Delivered) != p(expect, "delivered") || int(pub.Failed) != p(expect, "failed") {
			return fmt.Errorf("publish %d: delivered %d, failed %d; expected %d and %d", j, pub.Delivered, pub.Failed,
				p(expect, "delivered"), p(expect, "failed"))
		}
		if members[pub.TakenBy] == nil {
			return fmt.Errorf("publish %d: taken by %q, not a member", j, pub.TakenBy)
		}
		takers[payload] = pub.TakenBy
		distinct[pub.TakenBy] = true
	}
	time.Sleep(300 * time.Millisecond)
	for payload, taker := range takers {
		for id, l := range members {
			want := 0
			if id == taker {
				want = 1
			}
			if got := l.count(payload); got != want {
				return fmt.Errorf("%q (taken by %s): %s's application saw it %d times, expected %d", payload, taker, id, got, want)
			}
		}
	}
	t.Logf("%d messages over %d distinct members", len(takers), len(distinct))
	if len(distinct) < p(expect, "min_distinct_takers") {
		return fmt.Errorf("%d messages went to %d distinct members, expected at least %d", len(takers), len(distinct), p(expect, "min_distinct_takers"))
	}
	return nil
}

func (r *runner) ticks(t *testing.T, params, expect map[string]any) error {
	count, interval := p(params, "count"), uint64(p(params, "interval_ms"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(count)*time.Duration(interval)*time.Millisecond+5*time.Second)
	defer cancel()
	w, err := r.client(t).WatchTicks(ctx, uint32(p(params, "slot")))
	if err != nil {
		return err
	}
	defer w.Close()
	var last uint64
	for k := range count {
		tick, err := w.Next(ctx)
		if err != nil {
			return fmt.Errorf("tick %d: %w", k, err)
		}
		if expect["consecutive"] == true && k > 0 && tick.GetNumber() != last+1 {
			return fmt.Errorf("tick %d after %d", tick.GetNumber(), last)
		}
		if expect["due_ms_is_number_times_interval"] == true && tick.GetDueMs() != tick.GetNumber()*interval {
			return fmt.Errorf("tick %d due at %d, expected %d", tick.GetNumber(), tick.GetDueMs(), tick.GetNumber()*interval)
		}
		last = tick.GetNumber()
	}
	return nil
}

func (r *runner) failover(t *testing.T, params, expect map[string]any) error {
	ctx := context.Background()
	slot := uint32(p(params, "slot"))
	key, _ := params["key"].(string)
	table, err := r.c.settled(time.Duration(p(params, "rejoin_timeout_ms"))*time.Millisecond, r.slots)
	if err != nil {
		return err
	}
	var target string
	switch params["target"] {
	case "leader":
		target = table.GetLeader()
	case "owner":
		for _, route := range table.GetRoutes() {
			if route.GetSlot() == slot {
				target = route.GetOwner()
			}
		}
	default:
		return fmt.Errorf("unknown failover target %v", params["target"])
	}
	victim := r.c.index(target)
	if victim < 0 {
		return fmt.Errorf("the %v %q is not an instance of this cluster", params["target"], target)
	}
	c, err := vss.New(vss.WithEndpoints(r.c.endpoints()...))
	if err != nil {
		return err
	}
	defer c.Close()
	var calls, failed, granted atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range p(params, "concurrency") {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				g, err := c.Acquire(ctx, slot, vss.AcquireOptions{Key: key, Tokens: 1})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				granted.Add(int64(g.Granted))
			}
		})
	}
	ms := func(name string) time.Duration { return time.Duration(p(params, name)) * time.Millisecond }
	time.Sleep(ms("before_kill_ms"))
	atKill := calls.Load()
	r.c.kill(victim)
	time.Sleep(ms("after_kill_ms"))
	atRestart := calls.Load()
	r.c.start(victim)
	_, rejoinErr := r.c.settled(ms("rejoin_timeout_ms"), r.slots)
	time.Sleep(ms("after_restart_ms"))
	close(stop)
	wg.Wait()
	report := fmt.Sprintf("SIGKILL of the %v (%s): %d calls (%d before the kill, %d while it was down, %d after its restart), %d failed, %d tokens granted",
		params["target"], target, calls.Load(), atKill, atRestart-atKill, calls.Load()-atRestart, failed.Load(), granted.Load())
	t.Log(report)
	fmt.Println("conformance (go client) failover:", report)
	if rejoinErr != nil {
		return fmt.Errorf("the restarted instance did not rejoin: %w", rejoinErr)
	}
	if f := failed.Load(); f != int64(p(expect, "failed_calls")) {
		return fmt.Errorf("%d failed calls (first: %v), expected %d", f, firstErr.Load(), p(expect, "failed_calls"))
	}
	if n := calls.Load(); n < int64(p(expect, "min_calls")) {
		return fmt.Errorf("%d calls, expected at least %d", n, p(expect, "min_calls"))
	}
	return nil
}

func (r *runner) subscriptionReopens(t *testing.T, params, expect map[string]any) error {
	ctx := context.Background()
	slot := uint32(p(params, "slot"))
	victim := p(params, "instance")
	if victim < 0 || victim >= len(r.c.nodes) {
		return fmt.Errorf("instance %d: the cluster has %d", victim, len(r.c.nodes))
	}
	ms := func(name string) time.Duration { return time.Duration(p(params, name)) * time.Millisecond }
	c, err := vss.New(vss.WithEndpoints(r.c.endpoints()...))
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := listen(ctx, c, r.runID+"/reopen", slot)
	if err != nil {
		return err
	}
	defer l.close()
	time.Sleep(ms("settle_ms"))
	r.c.kill(victim)
	r.c.start(victim)
	if _, err := r.c.settled(ms("rejoin_timeout_ms"), r.slots); err != nil {
		return fmt.Errorf("the restarted instance did not rejoin: %w", err)
	}
	want := toFloat(expect["restarted_instance_connected_clients_min"])
	deadline := time.Now().Add(ms("reopen_timeout_ms"))
	var connected float64
	for {
		connected, err = r.c.metric(victim, "vss_connected_clients")
		if err == nil && connected >= want {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s reports vss_connected_clients %v (%v) %v after it rejoined, expected at least %v: the stream to it was not reopened",
				r.c.nodes[victim].id, connected, err, ms("reopen_timeout_ms"), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s counts %v connected client(s) after its restart", r.c.nodes[victim].id, connected)
	var payloads []string
	for j := range p(params, "messages") {
		payload := fmt.Sprintf("%s/reopen%d", r.runID, j)
		payloads = append(payloads, payload)
		pub, err := r.client(t).Publish(ctx, slot, []byte(payload), r.runID+"/publisher")
		if err != nil {
			return fmt.Errorf("publish %d: %w", j, err)
		}
		if int(pub.Delivered) != p(expect, "delivered") || int(pub.Failed) != p(expect, "failed") {
			return fmt.Errorf("publish %d: delivered %d, failed %d; expected %d and %d", j, pub.Delivered, pub.Failed,
				p(expect, "delivered"), p(expect, "failed"))
		}
	}
	return waitSeen([]*listener{l}, payloads, p(expect, "copies_seen_by_application"))
}
