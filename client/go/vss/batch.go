package vss

import (
	"context"
	"fmt"
	"runtime"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// Coalescing of concurrent acquires into AcquireBatch calls, as in the
// Rust client: each endpoint has a lane, a goroutine that takes the
// acquires waiting for that instance and sends them as one call. A lane
// keeps at most batchesInFlight calls outstanding; acquires that arrive
// while they are all out wait for the first to come back and leave
// together. So a lone acquire leaves at once, and under load a batch grows
// to what arrived during one round trip (at most maxBatch): no timer.
const (
	// maxBatch is the most acquires in one call (the server takes 1,000).
	maxBatch = 256
	// batchesInFlight is the number of calls a lane keeps outstanding.
	batchesInFlight = 2
	// laneDepth is the number of acquires a lane holds waiting; past it,
	// acquires are sent on their own.
	laneDepth = 4096
)

type pending struct {
	req    *vsspb.AcquireRequest
	answer chan laneAnswer // buffered 1
}

type laneAnswer struct {
	outcome *vsspb.AcquireOutcome
	err     error
}

type batcher struct {
	c     *Client
	lanes []chan pending
}

func newBatcher(c *Client) *batcher {
	b := &batcher{c: c}
	for _, inst := range c.instances {
		lane := make(chan pending, laneDepth)
		b.lanes = append(b.lanes, lane)
		c.spawn(func() { b.run(inst, lane) })
	}
	return b
}

// submit sends req on lane's next batch. sent is false when it was not
// taken (the lane is full): send it alone. A failed call comes back as
// the error of every acquire of the batch.
func (b *batcher) submit(ctx context.Context, lane int, req *vsspb.AcquireRequest) (outcome *vsspb.AcquireOutcome, err error, sent bool) {
	p := pending{req: req, answer: make(chan laneAnswer, 1)}
	select {
	case b.lanes[lane] <- p:
	default:
		return nil, nil, false
	}
	select {
	case a := <-p.answer:
		return a.outcome, a.err, true
	case <-ctx.Done():
		return nil, ctx.Err(), true
	case <-b.c.ctx.Done():
		return nil, ErrClosed, true
	}
}

func (b *batcher) run(inst *instance, lane chan pending) {
	ctx := b.c.ctx
	permits := make(chan struct{}, batchesInFlight)
	for {
		var first pending
		select {
		case <-ctx.Done():
			return
		case first = <-lane:
		}
		select {
		case <-ctx.Done():
			return
		case permits <- struct{}{}:
		}
		// Acquirers woken by the last answers are runnable now: let them
		// queue their next acquire before the batch is gathered.
		runtime.Gosched()
		batch := []pending{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case p := <-lane:
				batch = append(batch, p)
			default:
				break gather
			}
		}
		if !b.c.spawn(func() {
			defer func() { <-permits }()
			b.send(ctx, inst, batch)
		}) {
			return
		}
	}
}

func (b *batcher) send(ctx context.Context, inst *instance, batch []pending) {
	reqs := make([]*vsspb.AcquireRequest, len(batch))
	for i, p := range batch {
		reqs[i] = p.req
	}
	attempt, cancel := context.WithTimeout(ctx, b.c.timeout)
	defer cancel()
	reply, err := inst.stub.AcquireBatch(attempt, &vsspb.AcquireBatchRequest{Requests: reqs})
	if err != nil {
		if status.Code(err) == codes.DeadlineExceeded {
			err = status.Errorf(codes.DeadlineExceeded, "no answer within %v", b.c.timeout)
		}
		for _, p := range batch {
			p.answer <- laneAnswer{err: err}
		}
		return
	}
	outcomes := reply.GetOutcomes()
	for i, p := range batch {
		if i < len(outcomes) && outcomes[i].GetOutcome() != nil {
			p.answer <- laneAnswer{outcome: outcomes[i]}
			continue
		}
		p.answer <- laneAnswer{err: status.Error(codes.Internal,
			fmt.Sprintf("the instance answered fewer than %d acquires", len(batch)))}
	}
}
