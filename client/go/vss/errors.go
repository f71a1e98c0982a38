package vss

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrClosed is returned by calls made after [Client.Close].
var ErrClosed = errors.New("vss: client closed")

// NoSlot is the Slot of an [Error] from a call that names no slot.
const NoSlot = -1

// Error is a call that failed: the server refused the request (Endpoint
// names the instance that said so), or no instance could answer
// (Unreachable, with each instance's failure).
type Error struct {
	// Op is the verb: "acquire", "publish", "subscribe", ...
	Op string
	// Slot the call was for, or NoSlot.
	Slot int
	// Code is the gRPC code: the server's, or codes.Unavailable when no
	// instance could answer.
	Code codes.Code
	// Message is the server's message (it names the field and the limit),
	// or a summary of the failures.
	Message string
	// Endpoint is the instance that refused the request; empty when none
	// could be reached.
	Endpoint string
	// Failures lists, when no instance could answer, what each attempt
	// met ("endpoint: reason").
	Failures []string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("vss: ")
	b.WriteString(e.Op)
	if e.Slot != NoSlot {
		fmt.Fprintf(&b, " slot %d", e.Slot)
	}
	b.WriteString(": ")
	if e.Unreachable() {
		b.WriteString("no VSS instance reachable: ")
		b.WriteString(strings.Join(e.Failures, "; "))
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %s", codeName(e.Code), e.Message)
	if e.Endpoint != "" {
		fmt.Fprintf(&b, " (%s)", e.Endpoint)
	}
	return b.String()
}

// Unreachable says that no instance answered: every one was down or timed
// out, on every attempt.
func (e *Error) Unreachable() bool { return e.Endpoint == "" && e.Code == codes.Unavailable }

// codeNames are the google.rpc.Code names, as the protos spell them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// CodeName returns the google.rpc.Code name of c as the protos spell it
// (NOT_FOUND, INVALID_ARGUMENT, ...).
func CodeName(c codes.Code) string { return codeName(c) }

// isInstanceFailure says whether code means "this instance cannot answer
// now" rather than "this request is wrong": the same codes as the Rust
// client's is_instance_failure.
func isInstanceFailure(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown:
		return true
	}
	return false
}

func statusCode(err error) codes.Code { return status.Code(err) }
