package metrics

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// histogram is a Prometheus histogram whose state can be carried to the
// next generation: client_golang's own cannot be given a starting state.
// It is guarded by the Recorder's mutex.
type histogram struct {
	Bounds []float64 `json:"bounds"` // upper bounds, ascending, without +Inf
	Counts []uint64  `json:"counts"` // per bucket (not cumulative); one more than Bounds: +Inf
	Sum    float64   `json:"sum"`
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	v := d.Seconds()
	i, _ := slices.BinarySearch(h.Bounds, v) // the first bound >= v
	h.Counts[i]++
	h.Sum += v
}

// adopt takes over a carried histogram if it has the same buckets; a
// histogram with other buckets (the new binary changed Options.Buckets) is
// dropped, and the series starts again from zero, which Prometheus reads as
// a counter reset.
func (h *histogram) adopt(c *histogram) bool {
	if c == nil || !slices.Equal(c.Bounds, h.Bounds) || len(c.Counts) != len(h.Counts) {
		return false
	}
	copy(h.Counts, c.Counts)
	h.Sum = c.Sum
	return true
}

func (h *histogram) metric(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(desc, cum+h.Counts[len(h.Bounds)], h.Sum, buckets, labels...)
}
