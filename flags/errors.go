package flags

import (
	"errors"
	"fmt"
)

// Errors a refused values file wraps (in a *FileError), for callers that
// branch on the problem.
var (
	// ErrSyntax: the file is not JSON (or, through Options.YAML, not
	// YAML), is empty, is not an object of flags, or names a flag twice.
	ErrSyntax = errors.New("flags: malformed values file")
	// ErrUnknownFlag: the file names a flag the Registry does not have.
	ErrUnknownFlag = errors.New("flags: unknown flag")
	// ErrWrongKind: the file gives a flag a value of another kind (a
	// variant to a boolean, a percentage to a variant flag).
	ErrWrongKind = errors.New("flags: wrong kind")
	// ErrInvalid: a value out of range or malformed: a percentage outside
	// 0–100, a negative or all-zero weight, an unknown variant, an unknown
	// field, an empty attribute.
	ErrInvalid = errors.New("flags: invalid value")
)

// FileError is why a values file was refused. Error() names the file,
// the flag (when the problem is one flag's) and the problem:
//
//	flags: /etc/app/flags.json: flag "new-checkout": percent 120 is not within 0–100: flags: invalid value
//
// Err wraps one of ErrSyntax, ErrUnknownFlag, ErrWrongKind and ErrInvalid.
// A file with several problems is refused with all of them, joined
// (errors.Join), one FileError each.
type FileError struct {
	File string // the values file, as given to New or Parse
	Flag string // the flag concerned; "" for a problem of the whole file
	Err  error
}

func (e *FileError) Error() string {
	if e.Flag == "" {
		return fmt.Sprintf("flags: %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("flags: %s: flag %q: %v", e.File, e.Flag, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// DefinitionError is the value a Registry panics with when it refuses a
// definition.
type DefinitionError struct {
	Name    string // the flag's name as given (may be empty)
	Problem string
}

func (e *DefinitionError) Error() string {
	return fmt.Sprintf("flags: definition of %q refused: %s", e.Name, e.Problem)
}

// problem is an error of a flag's value: text, then the sentinel.
func problem(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel)
}
