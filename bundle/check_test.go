package bundle_test

// A few assertion helpers, so the tests need nothing beyond the standard
// library (testify's assert package would pull a yaml module into go.sum).

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

type checker struct{ fatal bool }

var (
	check = checker{}            // reports and continues
	must  = checker{fatal: true} // reports and stops the test
)

func (c checker) fail(t testing.TB, format string, args ...any) {
	t.Helper()
	if c.fatal {
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

func (c checker) NoError(t testing.TB, err error, m ...any) {
	t.Helper()
	if err != nil {
		c.fail(t, "unexpected error: %v%s", err, msg(m))
	}
}

func (c checker) Error(t testing.TB, err error, m ...any) {
	t.Helper()
	if err == nil {
		c.fail(t, "expected an error%s", msg(m))
	}
}

func (c checker) ErrorIs(t testing.TB, err, target error, m ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		c.fail(t, "error %v is not %v%s", err, target, msg(m))
	}
}

func (c checker) ErrorContains(t testing.TB, err error, sub string, m ...any) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), sub) {
		c.fail(t, "error %v does not contain %q%s", err, sub, msg(m))
	}
}

func (c checker) Equal(t testing.TB, want, got any, m ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		c.fail(t, "got %#v, want %#v%s", got, want, msg(m))
	}
}

func (c checker) Same(t testing.TB, want, got any, m ...any) {
	t.Helper()
	if want != got {
		c.fail(t, "got %p, want the same pointer %p%s", got, want, msg(m))
	}
}

func (c checker) True(t testing.TB, b bool, m ...any) {
	t.Helper()
	if !b {
		c.fail(t, "expected true%s", msg(m))
	}
}

func (c checker) False(t testing.TB, b bool, m ...any) {
	t.Helper()
	if b {
		c.fail(t, "expected false%s", msg(m))
	}
}

func (c checker) Nil(t testing.TB, x any, m ...any) {
	t.Helper()
	if x != nil && !reflect.ValueOf(x).IsNil() {
		c.fail(t, "expected nil, got %#v%s", x, msg(m))
	}
}

func (c checker) Zero(t testing.TB, x any, m ...any) {
	t.Helper()
	if x != nil && !reflect.ValueOf(x).IsZero() {
		c.fail(t, "expected zero, got %#v%s", x, msg(m))
	}
}

func (c checker) Len(t testing.TB, x any, n int, m ...any) {
	t.Helper()
	if l := reflect.ValueOf(x).Len(); l != n {
		c.fail(t, "length %d, want %d%s", l, n, msg(m))
	}
}

func (c checker) Contains(t testing.TB, s, sub string, m ...any) {
	t.Helper()
	if !strings.Contains(s, sub) {
		c.fail(t, "%q does not contain %q%s", s, sub, msg(m))
	}
}

func (c checker) Panics(t testing.TB, f func(), m ...any) {
	t.Helper()
	defer func() {
		t.Helper()
		if recover() == nil {
			c.fail(t, "expected a panic%s", msg(m))
		}
	}()
	f()
}
