package upgrader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// State parts let a library carry its own state to the next generation
// (package metrics carries its counters) without taking Options.SaveState
// from the program: the program's blob stays what State returns, in both
// generations. With no part registered the blob on the wire is the
// program's, byte for byte; with parts, it is an envelope: partsMagic, then
// for each part (the program's under the empty name first) its name and its
// bytes, each preceded by its length as a uvarint. A blob that is not such an
// envelope (from a generation that registered no part) is the program's.
const partsMagic = "\x00handoff-state-parts\x00\x01"

// stateParts holds the parts registered in this generation and those
// inherited from the previous one.
type stateParts struct {
	mu        sync.Mutex
	savers    map[string]func() ([]byte, error)
	inherited map[string][]byte
}

// none reports whether no part is registered.
func (p *stateParts) none() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.savers) == 0
}

// SaveStatePart registers save as the source of the part of the state blob
// named name: Upgrade calls it, after Options.SaveState, before it starts the
// new process, and the new generation reads what it returned with
// StatePart(name). It is for libraries that carry state of their own across
// upgrades; the program's Options.SaveState and State are unaffected. Parts
// count towards Options.MaxStateSize, and an error of save fails the upgrade
// as one of SaveState does. A later call with the same name replaces save;
// a nil save removes the part. name must not be empty. Safe for concurrent
// use.
func (u *Upgrader) SaveStatePart(name string, save func() ([]byte, error)) {
	if name == "" {
		panic("upgrader: SaveStatePart with an empty name")
	}
	p := &u.parts
	p.mu.Lock()
	defer p.mu.Unlock()
	if save == nil {
		delete(p.savers, name)
		return
	}
	if p.savers == nil {
		p.savers = make(map[string]func() ([]byte, error))
	}
	p.savers[name] = save
}

// StatePart returns the part named name that the previous generation
// handed over (see SaveStatePart), or nil if it handed over none.
func (u *Upgrader) StatePart(name string) []byte {
	p := &u.parts
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inherited[name]
}

// wrap returns the SaveState the Upgrader calls: the program's save (which
// may be nil) and the registered parts, in an envelope when there are parts.
func (p *stateParts) wrap(save func() ([]byte, error)) func() ([]byte, error) {
	return func() ([]byte, error) {
		var own []byte
		if save != nil {
			var err error
			if own, err = save(); err != nil {
				return nil, err
			}
		}
		p.mu.Lock()
		names := make([]string, 0, len(p.savers))
		for name := range p.savers {
			names = append(names, name)
		}
		savers := make([]func() ([]byte, error), 0, len(names))
		slices.Sort(names)
		for _, name := range names {
			savers = append(savers, p.savers[name])
		}
		p.mu.Unlock()
		if len(names) == 0 && !bytes.HasPrefix(own, []byte(partsMagic)) {
			return own, nil
		}
		parts := map[string][]byte{"": own}
		for i, name := range names {
			b, err := savers[i]()
			if err != nil {
				return nil, fmt.Errorf("state part %q: %w", name, err)
			}
			parts[name] = b
		}
		return joinParts(parts, names), nil
	}
}

// joinParts writes the envelope: the program's part, then the others in
// the order of names.
func joinParts(parts map[string][]byte, names []string) []byte {
	out := []byte(partsMagic)
	for _, name := range append([]string{""}, names...) {
		out = binary.AppendUvarint(out, uint64(len(name)))
		out = append(out, name...)
		out = binary.AppendUvarint(out, uint64(len(parts[name])))
		out = append(out, parts[name]...)
	}
	return out
}

// splitParts reads an envelope: the program's blob and the other parts. A
// blob that is not a well-formed envelope is the program's, whole.
func splitParts(blob []byte) (own []byte, parts map[string][]byte) {
	rest, ok := bytes.CutPrefix(blob, []byte(partsMagic))
	if !ok {
		return blob, nil
	}
	parts = map[string][]byte{}
	next := func() ([]byte, bool) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, false
		}
		b := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return b, true
	}
	for len(rest) > 0 {
		name, ok1 := next()
		data, ok2 := next()
		if !ok1 || !ok2 {
			return blob, nil
		}
		if _, dup := parts[string(name)]; dup {
			return blob, nil
		}
		if len(data) == 0 {
			data = nil
		}
		parts[string(name)] = data
	}
	own, ok = parts[""]
	if !ok {
		return blob, nil
	}
	delete(parts, "")
	return own, parts
}
