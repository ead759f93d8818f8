package flags

// Buckets is the number of buckets keys are spread over: a percentage is
// honoured to 0.001 %.
const Buckets = 100_000

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// seed is the FNV-1a 64 state after the flag's name and one zero byte:
// the hash of every key of a flag starts from it.
func seed(name string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= fnvPrime
	}
	h ^= 0 // the separator byte
	h *= fnvPrime
	return h
}

// bucketFrom continues the FNV-1a hash of seed over key, mixes it with
// MurmurHash3's 64-bit finaliser, and reduces it to [0, Buckets).
func bucketFrom(seed uint64, key string) uint32 {
	h := seed
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h % Buckets)
}

// Bucket returns the bucket, in [0, Buckets), that key falls in for the
// flag called name: the number a rollout percentage and variant weights
// are compared with (see the package documentation, "Assignment"). It is
// the whole of the assignment's randomness, so another service that
// computes it the same way makes the same assignments.
func Bucket(name, key string) int {
	return int(bucketFrom(seed(name), key))
}
