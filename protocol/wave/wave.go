// Package wave decides which devices are in a rollout wave. The controller and every agent
// compute the same answer from the device id, the rollout id and the wave's percentage, so
// a rollout needs one retained message per group and wave, not one per device.
//
// The bucket of a device in a rollout is the first 8 bytes of
// SHA-256(deviceID || 0x00 || rolloutID), read big-endian, modulo 10000. A device is in a
// wave of p percent when its bucket is below round(p × 100). Buckets are fixed for a
// rollout, so a device that joined a wave stays in it as the percentage grows, and a new
// rollout id reshuffles the fleet.
package wave

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// Buckets is the number of buckets: a wave's granularity is 0.01 percent.
const Buckets = 10000

// Bucket returns the device's bucket in the rollout, from 0 to Buckets-1.
func Bucket(deviceID, rolloutID string) uint32 {
	h := sha256.New()
	h.Write([]byte(deviceID))
	h.Write([]byte{0})
	h.Write([]byte(rolloutID))
	var sum [sha256.Size]byte
	return uint32(binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) % Buckets)
}

// InWave reports whether the device is in a wave of percent (0 to 100) of the rollout.
// Percentages outside 0..100 (and NaN) are clamped: below 0 is nobody, above 100 everybody.
func InWave(deviceID, rolloutID string, percent float64) bool {
	if !(percent > 0) {
		return false
	}
	limit := math.Round(math.Min(percent, 100) * 100)
	return float64(Bucket(deviceID, rolloutID)) < limit
}
