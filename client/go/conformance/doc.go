// Package conformance runs the language-neutral client conformance suite
// (client/conformance/scenarios.json) against the Go client and real
// vss-runtime processes. The suite lives in its tests: go test ./conformance/.
package conformance
