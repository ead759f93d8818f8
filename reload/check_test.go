package reload_test

import "github.com/handoff-go/handoff/internal/assert"

var (
	check = assert.Check // reports and continues
	must  = assert.Must  // reports and stops the test
)
