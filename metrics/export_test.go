package metrics

// AdoptForTest hands r a carried state part as Attach does with the one
// an Upgrader inherited, for tests that play both generations in one
// process.
func (r *Recorder) AdoptForTest(part []byte, gen int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen = gen
	return r.up.adopt(part, gen, r.opts.History)
}

// SaveStateForTest is the state part Attach registers.
func (r *Recorder) SaveStateForTest() ([]byte, error) { return r.saveState() }
