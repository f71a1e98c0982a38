// Command pubsub is bench/compare.sh's load tool for NATS core and Redis
// pub/sub, the counterpart of `vss-bench publish` and `vss-bench
// connections`.
//
// Mode fanout: S subscribers on a subject/channel and one publisher, all in
// this process (not the server's). One 36-byte message at a time; each is
// timed from publish until the last subscriber has received it. With -ack
// (NATS only), each subscriber answers every message on an ack subject and
// the time runs until the publisher has all S answers, which is what a VSS
// publish waits for. Neither NATS core nor Redis pub/sub acknowledges on its
// own: without -ack a message no subscriber got is only noticed here, never
// by the server.
//
// Mode idle: C connections, each subscribed once, held open until stdin
// closes, so the caller can read the server's memory. They speak the wire
// protocols directly: idle connections need no client library, and the
// client's footprint is not what is measured.
//
// Output: one JSON object, the keys `vss-bench -o json` uses.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

const subject = "fanout"

// Longest a message may take to reach everyone before it counts as
// incomplete (VSS's bench slot times deliveries out at 5 s too).
const messageTimeout = 5 * time.Second

type options struct {
	system      string
	addr        string
	mode        string
	subscribers int
	connections int
	ack         bool
	duration    time.Duration
	warmup      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.system, "system", "nats", "nats or redis")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:4222", "server host:port")
	flag.StringVar(&o.mode, "mode", "fanout", "fanout or idle")
	flag.IntVar(&o.subscribers, "subscribers", 100, "subscribers (fanout) or connections (idle)")
	flag.IntVar(&o.connections, "connections", 16, "NATS fanout: connections the subscribers share (Redis: one per subscriber)")
	flag.BoolVar(&o.ack, "ack", false, "NATS fanout: every subscriber acknowledges every message")
	flag.DurationVar(&o.duration, "d", 5*time.Second, "measured time")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time first")
	flag.Parse()
	var err error
	switch {
	case o.mode == "idle":
		err = idle(o)
	case o.mode == "fanout" && o.system == "nats":
		err = natsFanout(o)
	case o.mode == "fanout" && o.system == "redis":
		err = redisFanout(o)
	default:
		err = fmt.Errorf("unknown -system %q / -mode %q", o.system, o.mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(1)
	}
}

// round tracks the message in flight: subscribers count it, the one that
// completes it wakes the publisher.
type round struct {
	seq  atomic.Int64
	got  atomic.Int64
	want int64
	done chan int64
}

func newRound(want int) *round {
	return &round{want: int64(want), done: make(chan int64, 1)}
}

func (r *round) start(seq int64) {
	r.got.Store(0)
	r.seq.Store(seq)
}

// count is called once per received message (or ack) carrying seq.
func (r *round) count(seq int64) {
	if seq != r.seq.Load() {
		return // a late one from a message that timed out
	}
	if r.got.Add(1) == r.want {
		select {
		case r.done <- seq:
		default:
		}
	}
}

// wait blocks until message seq is complete or times out.
func (r *round) wait(seq int64) bool {
	deadline := time.NewTimer(messageTimeout)
	defer deadline.Stop()
	for {
		select {
		case s := <-r.done:
			if s == seq {
				return true
			}
		case <-deadline.C:
			return false
		}
	}
}

func payload(seq int64) []byte { return []byte(fmt.Sprintf("%036d", seq)) }

func seqOf(b []byte) int64 {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// measure publishes one message at a time until the time is up.
func measure(o options, r *round, publish func([]byte) error) summary {
	s := summary{Subscribers: o.subscribers}
	start := time.Now()
	from := start.Add(o.warmup)
	end := from.Add(o.duration)
	var latencies []time.Duration
	for seq := int64(1); ; seq++ {
		sent := time.Now()
		if !sent.Before(end) {
			break
		}
		r.start(seq)
		if err := publish(payload(seq)); err != nil {
			if !sent.Before(from) {
				s.Errors++
			}
			continue
		}
		ok := r.wait(seq)
		took := time.Since(sent)
		if sent.Before(from) {
			continue
		}
		if ok {
			s.Complete++
		} else {
			s.Incomplete++
		}
		latencies = append(latencies, took)
	}
	s.Seconds = o.duration.Seconds()
	s.fill(latencies)
	return s
}

type summary struct {
	Scenario      string           `json:"scenario"`
	Subscribers   int              `json:"subscribers"`
	Connections   int              `json:"connections"`
	Seconds       float64          `json:"seconds"`
	Complete      int              `json:"complete"`
	Incomplete    int              `json:"incomplete"`
	Errors        int              `json:"errors"`
	Throughput    float64          `json:"throughput"`
	Timed         int              `json:"timed"`
	LatencyMicros map[string]int64 `json:"latencyUs"`
}

func (s *summary) fill(l []time.Duration) {
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	s.Timed = len(l)
	if s.Seconds > 0 {
		s.Throughput = float64(s.Complete+s.Incomplete) / s.Seconds
	}
	at := func(q float64) int64 {
		if len(l) == 0 {
			return 0
		}
		i := int(q*float64(len(l))+0.999999) - 1 // nearest rank
		if i < 0 {
			i = 0
		}
		if i >= len(l) {
			i = len(l) - 1
		}
		return l[i].Microseconds()
	}
	s.LatencyMicros = map[string]int64{
		"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1),
	}
}

func emit(s summary) error {
	return json.NewEncoder(os.Stdout).Encode(s)
}

func natsFanout(o options) error {
	url := "nats://" + o.addr
	r := newRound(o.subscribers)
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < o.connections; i++ {
		c, err := nats.Connect(url, nats.Name(fmt.Sprintf("sub-%d", i)))
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	pub, err := nats.Connect(url, nats.Name("publisher"))
	if err != nil {
		return err
	}
	defer pub.Close()
	if o.ack {
		if _, err := pub.Subscribe("ack", func(m *nats.Msg) { r.count(seqOf(m.Data)) }); err != nil {
			return err
		}
		if err := pub.Flush(); err != nil {
			return err
		}
	}
	for i := 0; i < o.subscribers; i++ {
		c := conns[i%len(conns)]
		handler := func(m *nats.Msg) { r.count(seqOf(m.Data)) }
		if o.ack {
			handler = func(m *nats.Msg) { _ = c.Publish("ack", m.Data) }
		}
		sub, err := c.Subscribe(subject, handler)
		if err != nil {
			return err
		}
		// Out of the way of the measurement: a slow consumer is one
		// that falls behind, not one that got a burst.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return err
		}
	}
	for _, c := range conns {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	s := measure(o, r, func(p []byte) error {
		if err := pub.Publish(subject, p); err != nil {
			return err
		}
		return pub.Flush()
	})
	s.Scenario = "nats publish"
	if o.ack {
		s.Scenario = "nats publish, acknowledged by the subscribers"
	}
	s.Connections = o.connections
	return emit(s)
}

func redisFanout(o options) error {
	r := newRound(o.subscribers)
	ctx := context.Background()
	// One connection per subscriber: a Redis connection that subscribes
	// gets each message once, whatever else is subscribed on it.
	subs := redis.NewClient(&redis.Options{Addr: o.addr, PoolSize: 1})
	defer subs.Close()
	var wg sync.WaitGroup
	var pubsubs []*redis.PubSub
	defer func() {
		for _, p := range pubsubs {
			_ = p.Close()
		}
		wg.Wait()
	}()
	for i := 0; i < o.subscribers; i++ {
		p := subs.Subscribe(ctx, subject)
		if _, err := p.Receive(ctx); err != nil { // the subscription's confirmation
			return err
		}
		pubsubs = append(pubsubs, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := p.ReceiveMessage(ctx)
				if err != nil {
					return
				}
				r.count(seqOf([]byte(m.Payload)))
			}
		}()
	}
	pub := redis.NewClient(&redis.Options{Addr: o.addr, PoolSize: 1})
	defer pub.Close()
	s := measure(o, r, func(p []byte) error {
		return pub.Publish(ctx, subject, p).Err()
	})
	s.Scenario = "redis publish"
	s.Connections = o.subscribers
	return emit(s)
}

// idle opens the connections, says "ready N" and holds them until stdin
// closes.
func idle(o options) error {
	var hello string
	var confirmed func(*bufio.Reader) error
	switch o.system {
	case "nats":
		hello = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB idle 1\r\nPING\r\n"
		confirmed = func(r *bufio.Reader) error { return until(r, "PONG") }
	case "redis":
		hello = "*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nidle\r\n"
		confirmed = func(r *bufio.Reader) error { return until(r, ":1") }
	default:
		return fmt.Errorf("unknown -system %q", o.system)
	}
	conns := make([]net.Conn, 0, o.subscribers)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < o.subscribers; i++ {
		c, err := net.Dial("tcp", o.addr)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, hello); err != nil {
			return err
		}
		if err := confirmed(bufio.NewReaderSize(c, 512)); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
	}
	fmt.Printf("ready %d\n", len(conns))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// until reads lines until one is want (NATS's INFO and Redis's
// subscription reply come first).
func until(r *bufio.Reader, want string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) == want {
			return nil
		}
	}
}
