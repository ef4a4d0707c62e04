package gatehouse_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigurationReference keeps docs/configuration.md complete: every exported function of
// limiter, limithttp, limitgrpc and session that returns an option (Option, MiddlewareOption,
// LoginOption or FailurePolicy) must be named there as `package.Name`.
func TestConfigurationReference(t *testing.T) {
	doc, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	options := map[string]bool{"Option": true, "MiddlewareOption": true, "LoginOption": true, "FailurePolicy": true}
	found := 0
	for _, dir := range []string{"limiter", "limiter/limithttp", "limiter/limitgrpc", "session"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		pkg := filepath.Base(dir)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Recv != nil || !fn.Name.IsExported() || fn.Type.Results == nil || len(fn.Type.Results.List) != 1 {
					continue
				}
				id, ok := fn.Type.Results.List[0].Type.(*ast.Ident)
				if !ok || !options[id.Name] {
					continue
				}
				found++
				name := "`" + pkg + "." + fn.Name.Name + "("
				if !strings.Contains(string(doc), name) {
					t.Errorf("docs/configuration.md does not describe %s.%s (%s): add a row naming %s...)`", pkg, fn.Name.Name, f, name)
				}
			}
		}
	}
	if found < 30 {
		t.Fatalf("found %d option functions: the search is broken", found)
	}
}
