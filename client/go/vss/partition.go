package vss

import "github.com/vss-dev/vss/client/go/vsspb"

// A limiter slot's keys are split into partitions, each with its own
// owner and standby: the route's Partitions, by partition number. A key's
// partition is FNV-1a 64 of its UTF-8 bytes modulo the number of
// partitions, the function every VSS client and the runtime share
// (vss-wire's partition module; vectors in client/conformance/partitions.json).

const (
	fnvOffset uint64 = 0xcbf29ce484222325
	fnvPrime  uint64 = 0x00000100000001b3
)

// fnv1a64 is FNV-1a 64 of s's bytes (a Go string holds the key's UTF-8).
func fnv1a64(s string) uint64 {
	h := fnvOffset
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// partitionOf is key's partition among partitions (0 when there is at
// most one).
func partitionOf(key string, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	return int(fnv1a64(key) % uint64(partitions))
}

// ownerOf is the owner and standby of route's bucket key: its partition's
// when the slot's keys are split, else the slot's (for the empty key the
// two agree: the slot's route is the empty key's partition's).
func ownerOf(route *vsspb.SlotRoute, key string) (owner, standby string) {
	parts := route.GetPartitions()
	if len(parts) == 0 {
		return route.GetOwner(), route.GetStandby()
	}
	p := parts[partitionOf(key, len(parts))]
	return p.GetOwner(), p.GetStandby()
}
