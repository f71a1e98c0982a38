package conformance

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vss "github.com/vss-dev/vss/client/go/vss"
)

// runner holds what scenarios share: the cluster and clients of it.
type runner struct {
	c     *cluster
	runID string
	slots int
	all   *vss.Client // a client of every endpoint
}

func (r *runner) client(t *testing.T) *vss.Client {
	if r.all == nil {
		c, err := vss.New(vss.WithEndpoints(r.c.endpoints()...))
		if err != nil {
			t.Fatal(err)
		}
		r.all = c
	}
	return r.all
}

func (r *runner) close() {
	if r.all != nil {
		_ = r.all.Close()
	}
}

func (r *runner) run(t *testing.T, sc scenario) error {
	switch sc.Kind {
	case "steps":
		return r.steps(t, sc.Steps)
	case "broadcast_fanout":
		return r.broadcastFanout(t, sc.Params, sc.Expect)
	case "multicast_deregistration":
		return r.multicastDeregistration(t, sc.Params, sc.Expect)
	case "random_single_delivery":
		return r.randomSingleDelivery(t, sc.Params, sc.Expect)
	case "ticks":
		return r.ticks(t, sc.Params, sc.Expect)
	case "subscription_reopens_after_restart":
		return r.subscriptionReopens(t, sc.Params, sc.Expect)
	case "failover":
		return r.failover(t, sc.Params, sc.Expect)
	}
	return fmt.Errorf("unknown scenario kind %q: this runner must learn it", sc.Kind)
}

func (r *runner) steps(t *testing.T, steps []step) error {
	var lastReset float64
	for i, st := range steps {
		switch {
		case st.WaitReset != nil:
			time.Sleep(time.Duration(lastReset+st.WaitReset.PlusMs) * time.Millisecond)
			continue
		case st.SleepMs > 0:
			time.Sleep(time.Duration(st.SleepMs) * time.Millisecond)
			continue
		}
		clients := []*vss.Client{r.client(t)}
		if st.Via == "each" {
			clients = nil
			for _, e := range r.c.endpoints() {
				c, err := vss.New(vss.WithEndpoints(e))
				if err != nil {
					return err
				}
				defer c.Close()
				clients = append(clients, c)
			}
		}
		repeat := max(st.Repeat, 1)
		for ci, c := range clients {
			results := make([]map[string]any, repeat)
			errs := make([]error, repeat)
			if st.Concurrent {
				var wg sync.WaitGroup
				for k := range repeat {
					wg.Go(func() { results[k], errs[k] = call(c, st.Call, st.Args) })
				}
				wg.Wait()
			} else {
				for k := range repeat {
					results[k], errs[k] = call(c, st.Call, st.Args)
				}
			}
			for k := range repeat {
				where := fmt.Sprintf("step %d (%s %v), repeat %d, client %d", i, st.Call, st.Args, k, ci)
				if err := check(st, results[k], errs[k]); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				if v, ok := results[k]["reset_ms"]; ok {
					lastReset = toFloat(v)
				}
			}
		}
	}
	return nil
}

// check compares a call's outcome with the step's expectation.
func check(st step, result map[string]any, err error) error {
	if st.ExpectError != nil {
		if err == nil {
			return fmt.Errorf("expected %s (%q), got a reply %v", st.ExpectError.Code, st.ExpectError.MessageContains, result)
		}
		var e *vss.Error
		if !errors.As(err, &e) {
			return fmt.Errorf("expected a *vss.Error, got %T: %v", err, err)
		}
		if vss.CodeName(e.Code) != st.ExpectError.Code || !strings.Contains(e.Message, st.ExpectError.MessageContains) {
			return fmt.Errorf("expected %s containing %q, got %s: %q", st.ExpectError.Code,
				st.ExpectError.MessageContains, vss.CodeName(e.Code), e.Message)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("call failed: %w", err)
	}
	for field, want := range st.Expect {
		got, ok := result[field]
		if !ok {
			return fmt.Errorf("the reply has no field %q (reply %v)", field, result)
		}
		if !matches(field, want, got) {
			return fmt.Errorf("%s: expected %v, got %v (reply %v)", field, want, got, result)
		}
	}
	return nil
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case uint32:
		return float64(n)
	case uint64:
		return float64(n)
	case int64:
		return float64(n)
	case int:
		return float64(n)
	}
	return -1
}

func matches(field string, want, got any) bool {
	switch w := want.(type) {
	case map[string]any:
		g := toFloat(got)
		if lo, ok := w["min"]; ok && g < toFloat(lo) {
			return false
		}
		if hi, ok := w["max"]; ok && g > toFloat(hi) {
			return false
		}
		return true
	case float64:
		return toFloat(got) == w
	case []any:
		var ws []string
		for _, x := range w {
			ws = append(ws, fmt.Sprint(x))
		}
		gs, _ := got.([]string)
		if field == "services" {
			ws, gs = slices.Sorted(slices.Values(ws)), slices.Sorted(slices.Values(gs))
		}
		return slices.Equal(ws, gs) || (len(ws) == 0 && len(gs) == 0)
	default:
		return reflect.DeepEqual(want, got)
	}
}

// str reads a string argument, `{"repeat": "k", "times": N}` included.
func str(args map[string]any, name string) string {
	switch v := args[name].(type) {
	case string:
		return v
	case map[string]any:
		s, _ := v["repeat"].(string)
		return strings.Repeat(s, int(toFloat(v["times"])))
	}
	return ""
}

func num(args map[string]any, name string, def float64) float64 {
	if v, ok := args[name]; ok {
		return toFloat(v)
	}
	return def
}

// call makes one call through the client and returns the reply fields
// the suite names.
func call(c *vss.Client, verb string, args map[string]any) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 70*time.Second)
	defer cancel()
	slot := uint32(num(args, "slot", 0))
	switch verb {
	case "acquire":
		g, err := c.Acquire(ctx, slot, vss.AcquireOptions{Key: str(args, "key"), Tokens: uint32(num(args, "tokens", 0))})
		return map[string]any{"granted": g.Granted, "remaining": g.Remaining, "reset_ms": g.ResetMs}, err
	case "publish":
		p, err := c.Publish(ctx, slot, []byte(str(args, "message")), str(args, "client_id"))
		return map[string]any{"delivered": p.Delivered, "failed": p.Failed, "taken_by": p.TakenBy}, err
	case "register":
		return map[string]any{}, c.Register(ctx, slot, str(args, "client_id"))
	case "deregister":
		return map[string]any{}, c.Deregister(ctx, slot, str(args, "client_id"))
	case "increment", "decrement", "read_counter":
		var f func(context.Context, uint32, uint64) (*vss.CounterValue, error)
		switch verb {
		case "increment":
			f = c.Increment
		case "decrement":
			f = c.Decrement
		default:
			f = func(ctx context.Context, slot uint32, _ uint64) (*vss.CounterValue, error) {
				return c.ReadCounter(ctx, slot)
			}
		}
		v, err := f(ctx, slot, uint64(num(args, "amount", 1)))
		return map[string]any{"value": v.GetValue(), "increments": v.GetIncrements(), "decrements": v.GetDecrements(), "applied": v.GetApplied()}, err
	case "set":
		w, err := c.Set(ctx, slot, str(args, "key"), []byte(str(args, "value")))
		return map[string]any{"existed": w.GetExisted()}, err
	case "delete":
		w, err := c.Delete(ctx, slot, str(args, "key"))
		return map[string]any{"existed": w.GetExisted()}, err
	case "get":
		g, err := c.Get(ctx, slot, str(args, "key"))
		return map[string]any{"found": g.GetFound(), "value": string(g.GetValue()), "deleted": g.GetDeleted()}, err
	case "list_keys":
		l, err := c.ListKeys(ctx, slot, str(args, "prefix"), uint32(num(args, "limit", 0)))
		keys := []string{}
		for _, e := range l.GetEntries() {
			keys = append(keys, e.GetKey())
		}
		return map[string]any{"keys": keys, "truncated": l.GetTruncated()}, err
	case "announce":
		var reply interface {
			GetAdded() bool
		}
		var err error
		if _, ok := args["ttl_ms"]; ok {
			reply, err = c.AnnounceTTLMs(ctx, slot, str(args, "app"), str(args, "address"), uint64(num(args, "ttl_ms", 0)))
		} else {
			reply, err = c.Announce(ctx, slot, str(args, "app"), str(args, "address"), 0)
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"added": reply.GetAdded()}, nil
	case "withdraw":
		w, err := c.Withdraw(ctx, slot, str(args, "app"), str(args, "address"))
		return map[string]any{"removed": w.GetRemoved()}, err
	case "list_services":
		list, err := c.ListServices(ctx, slot, str(args, "app"))
		services := []string{}
		for _, s := range list {
			services = append(services, s.GetApp()+" "+s.GetAddress())
		}
		return map[string]any{"services": services}, err
	}
	return nil, fmt.Errorf("unknown call %q: this runner must learn it", verb)
}
