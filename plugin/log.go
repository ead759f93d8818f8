package plugin

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strconv"
	"strings"

	hclog "github.com/hashicorp/go-hclog"
)

// hclogAdapter is the hclog.Logger that go-plugin's client writes to. It
// forwards to the host's slog.Logger, so go-plugin's own records and the
// plugin's stderr (which go-plugin re-logs line by line, with the level the
// plugin's hclog wrote) end up in one place. hclog is used only here, because
// go-plugin's ClientConfig takes nothing else.
//
// Keys are brought to the project's convention (see renameKey), and a
// record of the plugin's stderr says so with output=stderr rather than
// carrying go-plugin's logger name (the staged file's 64-digit sha256).
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

// renameKey maps a key go-plugin (or the plugin) uses to the project's:
// "err" is "error"; "pid", and go-plugin's "id" (the runner's ID, our pid),
// name the plugin's process, which in the host's records is "plugin_pid";
// go-plugin's "plugin" is the path of the binary, and "plugin" already names
// the plugin in the Manager's logger; go-plugin's "version" is the protocol
// version, and "version" already names the plugin's version. "id",
// "plugin" and "version" are renamed only in go-plugin's own records: in
// the plugin's, they are the plugin's to choose.
func renameKey(key string, stderr bool) string {
	switch key {
	case "err":
		return "error"
	case "pid":
		return "plugin_pid"
	case "id":
		if !stderr {
			return "plugin_pid"
		}
	case "plugin":
		if !stderr {
			return "plugin_path"
		}
	case "version":
		if !stderr {
			return "protocol_version" // go-plugin's "using plugin"; version is ours
		}
	}
	return key
}

// convert renames the keys of hclog's alternating key-value list and turns
// go-plugin's string pids into numbers.
func convert(args []any, stderr bool) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i++ {
		k, ok := args[i].(string)
		if !ok || i+1 == len(args) {
			out = append(out, args[i])
			continue
		}
		v := args[i+1]
		i++
		k = renameKey(k, stderr)
		if s, isStr := v.(string); isStr && k == "plugin_pid" {
			if n, err := strconv.Atoi(s); err == nil {
				v = n
			}
		}
		out = append(out, k, v)
	}
	return out
}

func newHclog(l *slog.Logger) hclog.Logger { return &hclogAdapter{l: l} }

// levelTrace sits below slog.LevelDebug, as hclog's Trace sits below Debug.
const levelTrace = slog.LevelDebug - 4

func toSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := toSlog(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	stderr := a.name != ""
	attrs := make([]any, 0, len(a.args)+len(args)+2)
	if stderr {
		attrs = append(attrs, "output", "stderr")
	}
	attrs = append(attrs, a.args...)
	attrs = append(attrs, convert(args, stderr)...)
	// go-plugin's records, and the plugin's own stderr, say where they
	// come from like every record of the package.
	a.l.Log(ctx, lv, "plugin: "+msg, attrs...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.l.Enabled(context.Background(), toSlog(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.args = append(append([]any(nil), a.args...), convert(args, a.name != "")...)
	return &b
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	if b.name != "" {
		b.name += "." + name
	} else {
		b.name = name
	}
	return &b
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

// SetLevel is ignored: the level is the slog handler's.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Info(strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
