package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/metrics"
)

// upgrade runs an upgrade and returns once it committed or was rolled
// back. It does not end when the browser goes away: a closed tab must not
// roll an upgrade back (the Upgrader bounds it with UpgradeTimeout).
func (h *Handler) upgrade(r *http.Request, _ Control) (string, error) {
	u := h.rec.Upgrader()
	if u == nil {
		return "", errors.New("admin: no Upgrader (metrics.Recorder.Attach was not called)")
	}
	gen := u.Generation()
	if err := u.Upgrade(context.WithoutCancel(r.Context())); err != nil {
		return "", err
	}
	return fmt.Sprintf("generation %d committed", gen+1), nil
}

// rollback rolls a bundle, plugin or flag set back.
func (h *Handler) rollback(r *http.Request, c Control) (string, error) {
	switch c.Kind {
	case metrics.KindBundle, metrics.KindPlugin, metrics.KindFlags:
	default:
		return "", badRequestf("rollback: kind %q is not bundle, plugin or flags", c.Kind)
	}
	v, err := h.rec.Rollback(context.WithoutCancel(r.Context()), c.Kind, c.Name)
	if errors.Is(err, metrics.ErrUnknown) {
		return "", badRequestf("rollback: %v", err)
	}
	if err != nil {
		return "", err
	}
	return "now at " + v, nil
}

// rollout changes a flag's rollout in the flag set's values file, the way
// a deploy does (a new file renamed into place), and reloads it: the
// change lasts, across reloads and upgrades (every generation reads the
// file), and the file stays the one source of truth. A boolean flag gets
// {"percent": P} (or its object's "on" replaced by "percent", keeping its
// allow and deny lists and rules); a variant flag gets "weights". The new
// file is checked with flags.Parse before it replaces the old one.
func (h *Handler) rollout(r *http.Request, c Control) (string, error) {
	set, path, ok := h.rec.FlagSet(c.Name)
	if !ok {
		return "", badRequestf("rollout: no flag set %q", c.Name)
	}
	if path == "" {
		return "", badRequestf("rollout: flag set %q has no values file", c.Name)
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".json" {
		return "", badRequestf("rollout: %s is not a JSON values file; change it by hand", path)
	}
	info, ok := set.Registry().Lookup(c.Flag)
	if !ok {
		return "", badRequestf("rollout: no flag %q", c.Flag)
	}
	value, err := rolloutValue(info, c.Rollout)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin: rollout: %w", err)
	}
	out, err := setEntry(data, c.Flag, value)
	if err != nil {
		return "", badRequestf("rollout: %s: %v", path, err)
	}
	if _, err := flags.Parse(set.Registry(), path, out); err != nil {
		return "", badRequestf("rollout: the new values would be refused: %v", err)
	}
	if err := writeByRename(path, out); err != nil {
		return "", fmt.Errorf("admin: rollout: %w", err)
	}
	if err := set.Reload(context.WithoutCancel(r.Context())); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s", c.Flag, c.Rollout), nil
}

// rolloutValue turns a rollout ("25", "blue=50,green=50") into the
// changes to a flag's entry: the keys to set and to remove.
func rolloutValue(info flags.Info, rollout string) (entryChange, error) {
	rollout = strings.TrimSpace(rollout)
	if info.Kind == flags.KindBool {
		p, err := strconv.ParseFloat(strings.TrimSuffix(rollout, "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return entryChange{}, badRequestf("rollout: %q is not a percentage from 0 to 100", rollout)
		}
		return entryChange{set: map[string]any{"percent": p}, remove: []string{"on"}}, nil
	}
	weights := map[string]float64{}
	for _, part := range strings.Split(rollout, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		f, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
		if !ok || err != nil || f < 0 {
			return entryChange{}, badRequestf("rollout: %q is not variant=weight,... (%s)", rollout, part)
		}
		weights[strings.TrimSpace(name)] = f
	}
	return entryChange{set: map[string]any{"weights": weights}, remove: []string{"variant"}}, nil
}

type entryChange struct {
	set    map[string]any
	remove []string
}

// setEntry changes one flag's entry in a values file (a JSON object),
// keeping the order of the flags; the file is written indented.
func setEntry(data []byte, flag string, ch entryChange) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	type kv struct {
		key string
		raw json.RawMessage
	}
	var entries []kv
	found := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if key == flag {
			found = true
			if raw, err = changeEntry(raw, ch); err != nil {
				return nil, err
			}
		}
		entries = append(entries, kv{key, raw})
	}
	if !found {
		raw, err := changeEntry(nil, ch)
		if err != nil {
			return nil, err
		}
		entries = append(entries, kv{flag, raw})
	}
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, e := range entries {
		k, _ := json.Marshal(e.key)
		fmt.Fprintf(&b, "  %s: ", k)
		if err := json.Indent(&b, e.raw, "  ", "  "); err != nil {
			return nil, err
		}
		if i < len(entries)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// changeEntry applies ch to a flag's entry: an object keeps its other
// keys; anything else (true, "green", none) is replaced.
func changeEntry(raw json.RawMessage, ch entryChange) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '{' {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
	}
	for _, k := range ch.remove {
		delete(obj, k)
	}
	for k, v := range ch.set {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		obj[k] = b
	}
	return json.Marshal(obj) // keys sorted
}

// writeByRename replaces path with data: a new file beside it, renamed
// into place, so that the watcher never reads half of it.
func writeByRename(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".admin-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
