//go:build unix

package signal_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// checker holds the few assertions these tests use. expect reports and goes
// on, must stops the test. (testify's assert needs a module that go.sum does
// not list yet, and this package must not change go.sum.)
type checker struct{ fatal bool }

var (
	expect = checker{}
	must   = checker{fatal: true}
)

func (c checker) fail(t testing.TB, msg []any, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	if len(msg) > 0 {
		if f, ok := msg[0].(string); ok {
			s = fmt.Sprintf(f, msg[1:]...) + ": " + s
		}
	}
	if c.fatal {
		t.Fatal(s)
	}
	t.Error(s)
}

func (c checker) Equal(t testing.TB, want, got any, msg ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		c.fail(t, msg, "got %#v, want %#v", got, want)
	}
}

func (c checker) True(t testing.TB, ok bool, msg ...any) {
	t.Helper()
	if !ok {
		c.fail(t, msg, "false")
	}
}

func (c checker) Zero(t testing.TB, v any, msg ...any) {
	t.Helper()
	if v != nil && !reflect.ValueOf(v).IsZero() {
		c.fail(t, msg, "got %v, want zero", v)
	}
}

func (c checker) Len(t testing.TB, v any, n int, msg ...any) {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		c.fail(t, msg, "length %d, want %d", l, n)
	}
}

func (c checker) NoError(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err != nil {
		c.fail(t, msg, "unexpected error: %v", err)
	}
}

func (c checker) Error(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err == nil {
		c.fail(t, msg, "no error")
	}
}

func (c checker) ErrorIs(t testing.TB, err, target error, msg ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		c.fail(t, msg, "error %v is not %v", err, target)
	}
}

func (c checker) Less(t testing.TB, a, b int, msg ...any) {
	t.Helper()
	if a >= b {
		c.fail(t, msg, "%d is not less than %d", a, b)
	}
}

// Contains checks a substring of a string or an element of a []string.
func (c checker) Contains(t testing.TB, in any, elem string, msg ...any) {
	t.Helper()
	if !contains(in, elem) {
		c.fail(t, msg, "%q does not contain %q", in, elem)
	}
}

func (c checker) NotContains(t testing.TB, in any, elem string, msg ...any) {
	t.Helper()
	if contains(in, elem) {
		c.fail(t, msg, "%q contains %q", in, elem)
	}
}

func contains(in any, elem string) bool {
	switch v := in.(type) {
	case string:
		return strings.Contains(v, elem)
	case []string:
		for _, s := range v {
			if s == elem {
				return true
			}
		}
	}
	return false
}
