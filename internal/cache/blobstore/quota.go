package blobstore

// Quota bounds the bytes one org may hold in a store. Zero means no bound.
type Quota struct {
	// Soft: above it, the org's least recently used entries older than the
	// minimum retention age are evicted after each write.
	Soft int64
	// Hard: never exceeded. A write that would exceed it evicts inside the
	// org first and is refused with ErrQuotaExceeded if that is not enough.
	Hard int64
}
