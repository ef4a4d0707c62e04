package gatehouse_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocSnippetsAreCompiled keeps every Go snippet of README.md and docs/*.md compiled: each
// ```go block must appear, line for line (indentation aside), in a .go file of this repository,
// where 'make test' compiles it (an Example test, a demo, a test). A snippet edited in the docs
// alone, or code changed without its snippet, fails here with the snippet named.
func TestDocSnippetsAreCompiled(t *testing.T) {
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{"README.md"}, docs...)

	var sources []source
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return fs.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sources = append(sources, source{path: path, lines: trimmedLines(string(b))})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	blocks := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range goBlocks(string(b)) {
			blocks++
			want := trimmedLines(s.text)
			if len(want) == 0 {
				t.Errorf("%s:%d: an empty go block", doc, s.line)
				continue
			}
			found := ""
			for _, src := range sources {
				if src.contains(want) {
					found = src.path
					break
				}
			}
			if found == "" {
				t.Errorf("%s:%d: this go snippet is in no .go file of the repository, so nothing compiles it; "+
					"copy it from (or into) an Example test:\n%s", doc, s.line, s.text)
			} else {
				t.Logf("%s:%d: compiled in %s", doc, s.line, found)
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no go blocks found in README.md and docs/*.md: the extraction is broken")
	}
}

type source struct {
	path  string
	lines []string
}

// contains reports whether want appears in s as consecutive lines.
func (s source) contains(want []string) bool {
	for i := 0; i+len(want) <= len(s.lines); i++ {
		if s.lines[i] != want[0] {
			continue
		}
		match := true
		for j := 1; j < len(want); j++ {
			if s.lines[i+j] != want[j] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// trimmedLines returns the lines of text without their surrounding blanks, blank lines left out.
func trimmedLines(text string) []string {
	var out []string
	for l := range strings.Lines(text) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

type block struct {
	line int // of the opening fence, 1-based
	text string
}

var fence = regexp.MustCompile("^\\s*```")

// goBlocks returns the fenced blocks of a Markdown text whose info string is "go".
func goBlocks(md string) []block {
	var out []block
	var cur *strings.Builder // the go block being read
	inFence := false
	n := 0
	for l := range strings.Lines(md) {
		n++
		if !fence.MatchString(l) {
			if cur != nil {
				cur.WriteString(l)
			}
			continue
		}
		if inFence { // a closing fence
			if cur != nil {
				out = append(out, block{line: n - strings.Count(cur.String(), "\n") - 1, text: cur.String()})
			}
			inFence, cur = false, nil
			continue
		}
		inFence = true
		if strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), "`")) == "go" {
			cur = new(strings.Builder)
		}
	}
	return out
}
