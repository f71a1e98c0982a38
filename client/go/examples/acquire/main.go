// Command acquire is a runnable example of the Go client: it takes tokens
// from a limiter slot, publishes a broadcast to a subscriber of its own,
// and counts on a counter slot, against a local cluster (`vss dev`).
//
//	go run ./examples/acquire -endpoints 127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"time"

	vss "github.com/vss-dev/vss/client/go/vss"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720", "every instance, comma-separated")
	flag.Parse()

	client, err := vss.New(vss.WithEndpoints(*endpoints), vss.WithTimeout(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Slot 0 of examples/slots.yaml: bucket of 200, 100 per second.
	grant, err := client.Acquire(ctx, 0, vss.AcquireOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("acquire slot 0: granted %d (remaining %d, reset in %d ms)\n", grant.Granted, grant.Remaining, grant.ResetMs)

	// A request error names the slot and the limit, and is not retried
	// on another instance.
	_, err = client.Acquire(ctx, 42, vss.AcquireOptions{})
	var vssErr *vss.Error
	if errors.As(err, &vssErr) {
		fmt.Printf("acquire slot 42: %s: %s\n", vss.CodeName(vssErr.Code), vssErr.Message)
	}

	// Slot 10 is a broadcast slot: subscribe, publish, receive once.
	sub, err := client.Subscribe(ctx, "example-subscriber", 10)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	time.Sleep(200 * time.Millisecond) // let every instance see the stream
	publisher, err := vss.New(vss.WithEndpoints(*endpoints))
	if err != nil {
		log.Fatal(err)
	}
	defer publisher.Close()
	// Acknowledge while the publish waits: it returns once every delivery
	// is acknowledged (or the slot's timeout passed).
	received := make(chan *vss.Delivery, 1)
	go func() {
		d, err := sub.Next(ctx)
		if err != nil {
			log.Print(err)
			close(received)
			return
		}
		_ = d.Ack(ctx)
		received <- d
	}()
	published, err := publisher.Publish(ctx, 10, []byte("hello from Go"), "example-publisher")
	if err != nil {
		log.Fatal(err)
	}
	if d, ok := <-received; ok {
		fmt.Printf("received %q on slot %d from %s\n", d.Payload, d.Slot, d.Publisher)
	}
	fmt.Printf("published: delivered %d, failed %d\n", published.Delivered, published.Failed)

	// Slot 20 is a counter, kept on every instance.
	value, err := client.Increment(ctx, 20, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("counter slot 20: %d\n", value.GetValue())
}
