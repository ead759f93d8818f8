// Package flagcheck is a go/analysis analyzer for the flags of package
// flags. It reports:
//
//   - expired: a flag whose removal date (Def.RemoveBy) has passed,
//     at its definition;
//   - refused definitions: a Def without a Name, Description, Owner or
//     RemoveBy, or with a malformed date (the Registry would panic at
//     start), or whose fields are not constants (the analyzer could not
//     follow the flag);
//   - unknown: a flag evaluated by name (OpenFeature's client methods,
//     flags.Snapshot.Evaluate) that the program does not register;
//   - unused: a registered flag that no code of the program evaluates (no
//     use of its handle, no evaluation by name).
//
// Unknown and unused are decided per program, in its main package, over
// every package it imports (packages export what they define and use as
// facts): a report about another package's code names its position.
// Programs that share a registry but each use part of it can turn unused
// off with -flagcheck.unused=false.
//
// Run it with go vet through its command, flags/cmd/handoff-flagcheck:
//
//	go install github.com/handoff-go/handoff/flags/cmd/handoff-flagcheck
//	go vet -vettool=$(which handoff-flagcheck) ./...
package flagcheck

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/handoff-go/handoff/flags"
	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
)

const (
	flagsPath       = "github.com/handoff-go/handoff/flags"
	openfeaturePath = "github.com/open-feature/go-sdk/openfeature"
)

// Analyzer is the analyzer. Its flags: -today (YYYY-MM-DD, default the
// current date: the day expiry is judged on), -unused and -unknown
// (both true: report those).
var Analyzer = &analysis.Analyzer{
	Name:       "flagcheck",
	Doc:        "report expired, unknown and unused feature flags of github.com/handoff-go/handoff/flags",
	URL:        "https://pkg.go.dev/github.com/handoff-go/handoff/flags/flagcheck",
	Run:        run,
	Requires:   []*analysis.Analyzer{inspect.Analyzer},
	FactTypes:  []analysis.Fact{new(handleFact), new(Program)},
	ResultType: reflect.TypeFor[*Program](),
}

// The analyzer's flags (-flagcheck.today and so on under go vet).
var (
	today         string
	reportUnused  bool
	reportUnknown bool
)

func init() {
	Analyzer.Flags.StringVar(&today, "today", "", "the date expiry is judged on, YYYY-MM-DD (default: today)")
	Analyzer.Flags.BoolVar(&reportUnused, "unused", true, "report registered flags that no code of the program evaluates")
	Analyzer.Flags.BoolVar(&reportUnknown, "unknown", true, "report flags evaluated by name that the program does not register")
}

// handleFact marks a variable that holds a flag's handle.
type handleFact struct{ Name string }

func (*handleFact) AFact()           {}
func (f *handleFact) String() string { return "flag " + f.Name }

// Def is a flag definition found in the source.
type Def struct {
	Name, Owner, RemoveBy string
	Pos                   string // file:line:column
}

// Use is an evaluation of a flag: through its handle, or by name.
type Use struct {
	Name   string
	Pos    string
	ByName bool
}

// Program is what a package and every package it imports define and
// use: the analyzer's package fact and its result.
type Program struct {
	Defs []Def
	Uses []Use
}

func (*Program) AFact() {}
func (p *Program) String() string {
	return fmt.Sprintf("%d definitions, %d uses", len(p.Defs), len(p.Uses))
}

func run(pass *analysis.Pass) (any, error) {
	now := time.Now()
	if today != "" {
		t, err := time.Parse(flags.DateLayout, today)
		if err != nil {
			return nil, fmt.Errorf("flagcheck: -today %q: %w", today, err)
		}
		now = t
	}
	prog := &Program{}
	for _, imp := range pass.Pkg.Imports() {
		var f Program
		if pass.ImportPackageFact(imp, &f) {
			prog.Defs = append(prog.Defs, f.Defs...)
			prog.Uses = append(prog.Uses, f.Uses...)
		}
	}
	if pass.Pkg.Path() == flagsPath {
		pass.ExportPackageFact(prog)
		return prog, nil
	}

	c := &cache{pass: pass, defs: map[*ast.CallExpr]*defResult{}}
	local := map[types.Object]string{} // this package's handles
	defining := map[*ast.Ident]bool{}  // identifiers that declare or assign a handle
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)

	// Definitions, first: the handles they are stored in.
	ins.Preorder([]ast.Node{(*ast.CallExpr)(nil)}, func(n ast.Node) {
		call := n.(*ast.CallExpr)
		def, lit, ok := c.def(call)
		if !ok {
			return
		}
		def.Pos = position(pass, lit.Pos())
		prog.Defs = append(prog.Defs, def)
		if t, err := time.Parse(flags.DateLayout, def.RemoveBy); err == nil && !now.Before(t.AddDate(0, 0, 1)) {
			pass.Reportf(lit.Pos(), "flag %q expired on %s: remove it and the code it guards (owner: %s)", def.Name, def.RemoveBy, def.Owner)
		}
	})
	// Handles: variables initialised or assigned with a definition.
	ins.Preorder([]ast.Node{(*ast.ValueSpec)(nil), (*ast.AssignStmt)(nil)}, func(n ast.Node) {
		var lhs []*ast.Ident
		var rhs []ast.Expr
		switch n := n.(type) {
		case *ast.ValueSpec:
			lhs, rhs = n.Names, n.Values
		case *ast.AssignStmt:
			for _, e := range n.Lhs {
				id, _ := e.(*ast.Ident)
				lhs = append(lhs, id)
			}
			rhs = n.Rhs
		}
		if len(lhs) != len(rhs) {
			return
		}
		for i, e := range rhs {
			call, ok := ast.Unparen(e).(*ast.CallExpr)
			if !ok || lhs[i] == nil {
				continue
			}
			def, _, ok := c.def(call)
			obj := pass.TypesInfo.ObjectOf(lhs[i])
			if !ok || obj == nil {
				continue
			}
			local[obj] = def.Name
			defining[lhs[i]] = true
			if obj.Parent() == pass.Pkg.Scope() {
				pass.ExportObjectFact(obj, &handleFact{Name: def.Name})
			}
		}
	})
	// Uses of handles, and evaluations by name.
	ins.Preorder([]ast.Node{(*ast.Ident)(nil), (*ast.CallExpr)(nil)}, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.Ident:
			if defining[n] {
				return
			}
			obj, ok := pass.TypesInfo.Uses[n].(*types.Var)
			if !ok {
				return
			}
			name, ok := local[obj]
			if !ok {
				var f handleFact
				if obj.Pkg() == nil || obj.Pkg() == pass.Pkg || !pass.ImportObjectFact(obj, &f) {
					return
				}
				name = f.Name
			}
			prog.Uses = append(prog.Uses, Use{Name: name, Pos: position(pass, n.Pos())})
		case *ast.CallExpr:
			if name, pos, ok := byName(pass, n); ok {
				prog.Uses = append(prog.Uses, Use{Name: name, Pos: position(pass, pos), ByName: true})
			}
		}
	})

	prog.Defs = dedup(prog.Defs, func(d Def) string { return d.Pos })
	prog.Uses = dedup(prog.Uses, func(u Use) string { return u.Pos + "\x00" + u.Name })
	pass.ExportPackageFact(prog)
	if pass.Pkg.Name() == "main" {
		checkProgram(pass, prog)
	}
	return prog, nil
}

// checkProgram reports, in a main package, the flags evaluated by name
// that the program does not register, and the registered flags it never
// evaluates.
func checkProgram(pass *analysis.Pass, prog *Program) {
	if len(prog.Defs) == 0 {
		return // a program without flags of its own: its names are another provider's
	}
	defined := map[string]bool{}
	for _, d := range prog.Defs {
		defined[d.Name] = true
	}
	used := map[string]bool{}
	for _, u := range prog.Uses {
		used[u.Name] = true
	}
	here := func(pos string) (token.Pos, bool) {
		for _, f := range pass.Files {
			tf := pass.Fset.File(f.Pos())
			if tf != nil && strings.HasPrefix(pos, tf.Name()+":") {
				var line, col int
				if _, err := fmt.Sscanf(pos[len(tf.Name())+1:], "%d:%d", &line, &col); err == nil && line <= tf.LineCount() {
					return tf.LineStart(line) + token.Pos(col-1), true
				}
			}
		}
		return pass.Files[0].Package, false
	}
	if reportUnknown {
		for _, u := range prog.Uses {
			if !u.ByName || defined[u.Name] {
				continue
			}
			if p, ok := here(u.Pos); ok {
				pass.Reportf(p, "flag %q is evaluated but not registered", u.Name)
			} else {
				pass.Reportf(p, "flag %q is evaluated at %s but not registered", u.Name, u.Pos)
			}
		}
	}
	if reportUnused {
		for _, d := range prog.Defs {
			if used[d.Name] {
				continue
			}
			if p, ok := here(d.Pos); ok {
				pass.Reportf(p, "flag %q is registered but no code evaluates it", d.Name)
			} else {
				pass.Reportf(p, "flag %q (registered at %s) is never evaluated by this program", d.Name, d.Pos)
			}
		}
	}
}

// cache reads each definition once, so that its problems are reported once.
type cache struct {
	pass *analysis.Pass
	defs map[*ast.CallExpr]*defResult
}

type defResult struct {
	def Def
	lit *ast.CompositeLit
	ok  bool
}

// def reads the definition a call registers; ok is false when the call
// registers none, or one the analyzer reported.
func (c *cache) def(call *ast.CallExpr) (Def, *ast.CompositeLit, bool) {
	r, seen := c.defs[call]
	if !seen {
		r = &defResult{}
		if r.lit = defArg(c.pass, call); r.lit != nil {
			r.def, r.ok = readDef(c.pass, r.lit)
		}
		c.defs[call] = r
	}
	return r.def, r.lit, r.ok
}

// defArg returns the flags.Def literal of a call that registers a flag:
// (*flags.Registry).Bool, String and Number, and flags.Object.
func defArg(pass *analysis.Pass, call *ast.CallExpr) *ast.CompositeLit {
	fn := callee(pass, call)
	if fn == nil || fn.Pkg() == nil || fn.Pkg().Path() != flagsPath {
		return nil
	}
	arg := -1
	switch sig := fn.Type().(*types.Signature); {
	case sig.Recv() != nil && isNamed(sig.Recv().Type(), flagsPath, "Registry"):
		switch fn.Name() {
		case "Bool", "String", "Number":
			arg = 0
		}
	case sig.Recv() == nil && fn.Name() == "Object":
		arg = 1
	}
	if arg < 0 || arg >= len(call.Args) {
		return nil
	}
	lit, ok := ast.Unparen(call.Args[arg]).(*ast.CompositeLit)
	if !ok {
		pass.Reportf(call.Args[arg].Pos(), "flag definition is not a flags.Def literal: the analyzer cannot follow the flag")
		return nil
	}
	return lit
}

// readDef reads a Def literal's fields; it reports a definition the
// Registry would refuse, or one it cannot read.
func readDef(pass *analysis.Pass, lit *ast.CompositeLit) (Def, bool) {
	fields := map[string]string{}
	for _, e := range lit.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			pass.Reportf(lit.Pos(), "flag definition without field names: the analyzer cannot follow the flag")
			return Def{}, false
		}
		key, _ := kv.Key.(*ast.Ident)
		if key == nil {
			continue
		}
		tv := pass.TypesInfo.Types[kv.Value]
		if tv.Value == nil || tv.Value.Kind() != constant.String {
			pass.Reportf(kv.Value.Pos(), "flag definition: %s is not a constant: the analyzer cannot follow the flag", key.Name)
			return Def{}, false
		}
		fields[key.Name] = constant.StringVal(tv.Value)
	}
	def := Def{Name: fields["Name"], Owner: fields["Owner"], RemoveBy: fields["RemoveBy"]}
	var missing []string
	for _, f := range []string{"Name", "Description", "Owner", "RemoveBy"} {
		if strings.TrimSpace(fields[f]) == "" {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		pass.Reportf(lit.Pos(), "flag %q: no %s: the Registry refuses the definition", def.Name, strings.Join(missing, ", no "))
		return Def{}, false
	}
	if _, err := time.Parse(flags.DateLayout, def.RemoveBy); err != nil {
		pass.Reportf(lit.Pos(), "flag %q: RemoveBy %q is not a date (YYYY-MM-DD): the Registry refuses the definition", def.Name, def.RemoveBy)
		return Def{}, false
	}
	return def, true
}

// byName recognises an evaluation by a constant name: OpenFeature's
// client methods and flags.Snapshot.Evaluate.
func byName(pass *analysis.Pass, call *ast.CallExpr) (string, token.Pos, bool) {
	fn := callee(pass, call)
	if fn == nil || fn.Pkg() == nil {
		return "", 0, false
	}
	sig := fn.Type().(*types.Signature)
	if sig.Recv() == nil {
		return "", 0, false
	}
	arg := -1
	switch {
	case fn.Pkg().Path() == openfeaturePath && isNamed(sig.Recv().Type(), openfeaturePath, "Client"):
		for _, prefix := range []string{"Boolean", "String", "Float", "Int", "Object"} {
			if rest, ok := strings.CutPrefix(fn.Name(), prefix); ok && slices.Contains([]string{"", "Value", "ValueDetails"}, rest) {
				arg = 1
			}
		}
	case fn.Pkg().Path() == flagsPath && isNamed(sig.Recv().Type(), flagsPath, "Snapshot") && fn.Name() == "Evaluate":
		arg = 0
	}
	if arg < 0 || arg >= len(call.Args) {
		return "", 0, false
	}
	tv := pass.TypesInfo.Types[call.Args[arg]]
	if tv.Value == nil || tv.Value.Kind() != constant.String {
		return "", 0, false // a name known at run time only
	}
	return constant.StringVal(tv.Value), call.Args[arg].Pos(), true
}

// callee is the function or method a call calls, generic ones included.
func callee(pass *analysis.Pass, call *ast.CallExpr) *types.Func {
	fun := ast.Unparen(call.Fun)
	switch f := fun.(type) {
	case *ast.IndexExpr:
		fun = f.X
	case *ast.IndexListExpr:
		fun = f.X
	}
	var id *ast.Ident
	switch f := fun.(type) {
	case *ast.Ident:
		id = f
	case *ast.SelectorExpr:
		id = f.Sel
	default:
		return nil
	}
	fn, _ := pass.TypesInfo.Uses[id].(*types.Func)
	if fn != nil {
		fn = fn.Origin()
	}
	return fn
}

func isNamed(t types.Type, path, name string) bool {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == path && n.Obj().Name() == name
}

func position(pass *analysis.Pass, pos token.Pos) string {
	p := pass.Fset.Position(pos)
	return fmt.Sprintf("%s:%d:%d", p.Filename, p.Line, p.Column)
}

func dedup[T any](list []T, key func(T) string) []T {
	seen := map[string]bool{}
	out := list[:0]
	for _, x := range list {
		if k := key(x); !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	return out
}
