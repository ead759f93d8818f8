// Package assert holds the few assertion helpers the tests of reload and
// bundle share, so that they need nothing beyond the standard library.
package assert

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Checker asserts; Fatal makes a failure stop the test.
type Checker struct{ Fatal bool }

var (
	// Check reports a failure and lets the test go on.
	Check = Checker{}
	// Must reports a failure and stops the test.
	Must = Checker{Fatal: true}
)

func (c Checker) fail(t testing.TB, format string, args ...any) {
	t.Helper()
	if c.Fatal {
		t.Fatalf(format, args...)
	}
	t.Errorf(format, args...)
}

func msg(m []any) string {
	if len(m) == 0 {
		return ""
	}
	if f, ok := m[0].(string); ok {
		return ": " + fmt.Sprintf(f, m[1:]...)
	}
	return ": " + fmt.Sprint(m...)
}

// NoError asserts as its name says; m is an optional message (format and args).
func (c Checker) NoError(t testing.TB, err error, m ...any) {
	t.Helper()
	if err != nil {
		c.fail(t, "unexpected error: %v%s", err, msg(m))
	}
}

// Error asserts as its name says; m is an optional message (format and args).
func (c Checker) Error(t testing.TB, err error, m ...any) {
	t.Helper()
	if err == nil {
		c.fail(t, "expected an error%s", msg(m))
	}
}

// ErrorIs asserts as its name says; m is an optional message (format and args).
func (c Checker) ErrorIs(t testing.TB, err, target error, m ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		c.fail(t, "error %v is not %v%s", err, target, msg(m))
	}
}

// ErrorContains asserts as its name says; m is an optional message (format and args).
func (c Checker) ErrorContains(t testing.TB, err error, sub string, m ...any) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), sub) {
		c.fail(t, "error %v does not contain %q%s", err, sub, msg(m))
	}
}

// Equal asserts as its name says; m is an optional message (format and args).
func (c Checker) Equal(t testing.TB, want, got any, m ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		c.fail(t, "got %#v, want %#v%s", got, want, msg(m))
	}
}

// Same asserts as its name says; m is an optional message (format and args).
func (c Checker) Same(t testing.TB, want, got any, m ...any) {
	t.Helper()
	if want != got {
		c.fail(t, "got %p, want the same pointer %p%s", got, want, msg(m))
	}
}

// True asserts as its name says; m is an optional message (format and args).
func (c Checker) True(t testing.TB, b bool, m ...any) {
	t.Helper()
	if !b {
		c.fail(t, "expected true%s", msg(m))
	}
}

// False asserts as its name says; m is an optional message (format and args).
func (c Checker) False(t testing.TB, b bool, m ...any) {
	t.Helper()
	if b {
		c.fail(t, "expected false%s", msg(m))
	}
}

// Nil asserts as its name says; m is an optional message (format and args).
func (c Checker) Nil(t testing.TB, x any, m ...any) {
	t.Helper()
	if x != nil && !reflect.ValueOf(x).IsNil() {
		c.fail(t, "expected nil, got %#v%s", x, msg(m))
	}
}

// Zero asserts as its name says; m is an optional message (format and args).
func (c Checker) Zero(t testing.TB, x any, m ...any) {
	t.Helper()
	if x != nil && !reflect.ValueOf(x).IsZero() {
		c.fail(t, "expected zero, got %#v%s", x, msg(m))
	}
}

// Len asserts as its name says; m is an optional message (format and args).
func (c Checker) Len(t testing.TB, x any, n int, m ...any) {
	t.Helper()
	if l := reflect.ValueOf(x).Len(); l != n {
		c.fail(t, "length %d, want %d%s", l, n, msg(m))
	}
}

// Contains asserts as its name says; m is an optional message (format and args).
func (c Checker) Contains(t testing.TB, s, sub string, m ...any) {
	t.Helper()
	if !strings.Contains(s, sub) {
		c.fail(t, "%q does not contain %q%s", s, sub, msg(m))
	}
}

// Panics asserts as its name says; m is an optional message (format and args).
func (c Checker) Panics(t testing.TB, f func(), m ...any) {
	t.Helper()
	defer func() {
		t.Helper()
		if recover() == nil {
			c.fail(t, "expected a panic%s", msg(m))
		}
	}()
	f()
}
