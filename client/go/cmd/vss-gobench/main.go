// Command vss-gobench measures batched acquire throughput of the Go client:
// C goroutines acquire through one client (which coalesces their
// concurrent acquires into AcquireBatch calls) for a duration, after a
// warm-up, and it prints one JSON line at the end:
//
//	{"client":"go","decisions_per_s":N,"calls":N,"errors":N}
//
// A decision is an acquire answered (granted or refused); an error is a
// failed call. bench/clients.sh runs it beside vss-bench's acquire-batch.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	vss "github.com/vss-dev/vss/client/go/vss"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:7700", "instances, comma-separated host:port")
	slot := flag.Uint("slot", 1, "limiter slot")
	key := flag.String("key", "", "acquire key (empty: the slot's single bucket)")
	concurrency := flag.Int("concurrency", 64, "goroutines acquiring at once")
	duration := flag.Duration("duration", 10*time.Second, "measured time")
	warmup := flag.Duration("warmup", 2*time.Second, "time before measuring")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured time to this file")
	flag.Parse()
	if *concurrency < 1 {
		fmt.Fprintln(os.Stderr, "vss-gobench: --concurrency must be at least 1")
		os.Exit(2)
	}
	client, err := vss.New(vss.WithEndpoints(*endpoints))
	if err != nil {
		fmt.Fprintln(os.Stderr, "vss-gobench:", err)
		os.Exit(2)
	}
	defer client.Close()

	var measuring, stopping atomic.Bool
	var calls, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	ctx := context.Background()
	opts := vss.AcquireOptions{Key: *key, Tokens: 1}
	for range *concurrency {
		wg.Go(func() {
			for !stopping.Load() {
				_, err := client.Acquire(ctx, uint32(*slot), opts)
				if !measuring.Load() {
					continue
				}
				calls.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	time.Sleep(*warmup)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "vss-gobench: --cpuprofile:", err)
			os.Exit(2)
		}
		defer f.Close()
	}
	measuring.Store(true)
	began := time.Now()
	time.Sleep(*duration)
	measuring.Store(false)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	elapsed := time.Since(began)
	stopping.Store(true)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "vss-gobench: first error:", e)
	}
	n, failed := calls.Load(), errs.Load()
	out, _ := json.Marshal(struct {
		Client        string  `json:"client"`
		DecisionsPerS float64 `json:"decisions_per_s"`
		Calls         int64   `json:"calls"`
		Errors        int64   `json:"errors"`
	}{"go", float64(n-failed) / elapsed.Seconds(), n, failed})
	fmt.Println(string(out))
}
