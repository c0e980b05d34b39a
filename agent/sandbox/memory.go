package sandbox

import "github.com/tetratelabs/wazero/experimental"

// limitedMemory is one instance's linear memory: a plain byte slice that refuses to grow past
// limit bytes and remembers that it refused.
type limitedMemory struct {
	limit uint64
	buf   []byte
	hit   bool // a grow past limit was refused
}

// Allocate implements experimental.MemoryAllocator; each instance has its own limitedMemory.
func (m *limitedMemory) Allocate(capacity, max uint64) experimental.LinearMemory {
	if capacity > m.limit {
		capacity = m.limit
	}
	m.buf = make([]byte, 0, capacity)
	return m
}

// Reallocate implements experimental.LinearMemory.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.hit = true
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// Grow by at least doubling, capped at the limit, so repeated memory.grow is amortised.
	c := max(size, min(2*uint64(cap(m.buf)), m.limit))
	nb := make([]byte, size, c)
	copy(nb, m.buf)
	m.buf = nb
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *limitedMemory) Free() { m.buf = nil }
