package script

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/scripts"
)

// files are the scripts (*.lua) and the parts they share (lib/*.lua), from the scripts directory.
var files = scripts.FS()

// includeDirective starts a line of a script (or of a part) that compose replaces with the text of
// a shared part: "--#include lib/time_ms" is replaced by scripts/lib/time_ms.lua. docs/runtime.md
// describes the composition.
const includeDirective = "--#include "

var embedded = loadEmbedded()

func loadEmbedded() map[string]*Script {
	m := make(map[string]*Script)
	names, err := fs.Glob(files, "*.lua")
	if err == nil && len(names) == 0 {
		err = fs.ErrNotExist
	}
	for _, p := range names {
		if err != nil {
			break
		}
		var src string
		src, err = compose(files, p)
		name := strings.TrimSuffix(path.Base(p), ".lua")
		m[name] = New(name, src)
	}
	if err != nil {
		// The files are compiled into the binary, and every test composes them: failing here is a
		// broken build.
		panic("gatehouse: composing embedded scripts: " + err.Error())
	}
	return m
}

// compose returns the script at file (a path in fsys, such as "token_bucket.lua") with every
// include directive replaced by the text of the part it names, a path relative to the script's
// directory without ".lua". Parts may include parts; each part is included once per script, where
// it is first named (a later directive for it is dropped), so that a part can name what it needs
// without doubling what the script names too. A part that includes itself, through any chain, is
// an error, as is an unknown part.
func compose(fsys fs.FS, file string) (string, error) {
	c := composer{fsys: fsys, dir: path.Dir(file), done: map[string]bool{}}
	var b strings.Builder
	if err := c.write(&b, file, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

type composer struct {
	fsys fs.FS
	dir  string
	done map[string]bool // parts included so far
}

func (c *composer) write(b *strings.Builder, file string, chain []string) error {
	src, err := fs.ReadFile(c.fsys, file)
	if err != nil {
		return err
	}
	chain = append(chain, file)
	for line := range strings.Lines(string(src)) {
		part, ok := strings.CutPrefix(line, includeDirective)
		if !ok {
			b.WriteString(line)
			continue
		}
		part = strings.TrimSpace(part)
		p := path.Join(c.dir, part) + ".lua"
		if part == "" || !fs.ValidPath(p) || (c.dir != "." && !strings.HasPrefix(p, c.dir+"/")) {
			return fmt.Errorf("%s: %q names no part", file, strings.TrimSpace(line))
		}
		if slices.Contains(chain, p) {
			return fmt.Errorf("%s: including %s makes a cycle (%s)", file, part, strings.Join(append(chain, p), " -> "))
		}
		if c.done[p] {
			continue
		}
		c.done[p] = true
		if err := c.write(b, p, chain); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	if len(chain) > 1 && len(src) > 0 && !strings.HasSuffix(string(src), "\n") {
		b.WriteByte('\n') // a part ends its last line, so that the script's next line stays its own
	}
	return nil
}

// Lookup returns the embedded script with the given name (its file name in scripts/ without ".lua").
func Lookup(name string) (*Script, bool) {
	s, ok := embedded[name]
	return s, ok
}

// Scripts returns every embedded script, sorted by name.
func Scripts() []*Script {
	out := make([]*Script, 0, len(embedded))
	for _, s := range embedded {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Script) int { return strings.Compare(a.name, b.name) })
	return out
}
