package session

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The session record's field names and the scripts' reply statuses are named once in Go
// (fields.go) and once in Lua (lib/session.lua): the two agree, name for name and value for value.
func TestScriptNames(t *testing.T) {
	goNames := goConsts(t, "fields.go", "field", "status")
	luaNames := luaConsts(t, "../scripts/lib/session.lua", "FIELD_", "STATUS_")
	if len(goNames) < 20 || len(luaNames) < 20 {
		t.Fatalf("read %d names in Go, %d in Lua: the parsers miss them", len(goNames), len(luaNames))
	}
	for _, name := range slices.Sorted(maps.Keys(goNames)) {
		lua, ok := luaNames[name]
		switch {
		case !ok:
			t.Errorf("%s = %s is named in Go, not in lib/session.lua", name, goNames[name])
		case lua != goNames[name]:
			t.Errorf("%s is %s in Go, %s in Lua", name, goNames[name], lua)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(luaNames)) {
		if _, ok := goNames[name]; !ok {
			t.Errorf("%s = %s is named in lib/session.lua, not in Go", name, luaNames[name])
		}
	}
	// session_touch.lua looks for the metadata it checks only among the fields whose names are at
	// most 3 bytes: a longer metadata name would never be found there.
	for name, v := range luaNames {
		if strings.HasPrefix(name, "FIELD_") && (len(v) > 3 || !strings.HasPrefix(v, "_")) {
			t.Errorf("%s = %q: a metadata field's name is '_' and at most 2 more bytes", name, v)
		}
	}
	// What the scripts write is what Go reads: the values themselves.
	if fieldGen != "_g" || fieldDeadline != "_d" || statusNotFound != 0 || statusKeepSignedOut != -2 {
		t.Error("fields.go changed a value the stored records and the scripts' replies depend on")
	}
}

// goConsts returns the constants of file whose names start with one of prefixes, by their Lua
// spelling (fieldMovedTo: FIELD_MOVED_TO), each value as Go writes it ("_r", or -1).
func goConsts(t *testing.T, file string, prefixes ...string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || len(spec.Values) != len(spec.Names) {
			return true
		}
		for i, id := range spec.Names {
			if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(id.Name, p) }) {
				continue
			}
			out[snake(id.Name)] = literal(t, spec.Values[i])
		}
		return true
	})
	return out
}

// literal returns a constant's value: a string unquoted, a number (negative too) as written.
func literal(t *testing.T, e ast.Expr) string {
	t.Helper()
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			s, err := strconv.Unquote(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return e.Value
	case *ast.UnaryExpr:
		if e.Op == token.SUB {
			return "-" + literal(t, e.X)
		}
	}
	t.Fatalf("constant value %T is not a literal", e)
	return ""
}

// snake turns fieldMovedTo into FIELD_MOVED_TO and statusOK into STATUS_OK.
func snake(name string) string {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(c))
	}
	return b.String()
}

var luaConst = regexp.MustCompile(`(?m)^local ([A-Z_]+)\s*=\s*('([^']*)'|-?[0-9]+)\s*(?:--.*)?$`)

// luaConsts returns the top-level locals of file whose names start with one of prefixes.
func luaConsts(t *testing.T, file string, prefixes ...string) map[string]string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range luaConst.FindAllStringSubmatch(string(src), -1) {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(m[1], p) }) {
			continue
		}
		v := m[2]
		if strings.HasPrefix(v, "'") {
			v = m[3]
		}
		out[m[1]] = v
	}
	return out
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"fieldMovedTo": "FIELD_MOVED_TO", "statusOK": "STATUS_OK", "fieldIP": "FIELD_IP",
		"fieldUA": "FIELD_UA", "statusNotFound": "STATUS_NOT_FOUND", "fieldGen": "FIELD_GEN"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}
