package script

import (
	"embed"
	"io/fs"
	"path"
	"slices"
	"strings"
)

//go:embed lua/*.lua
var files embed.FS

var embedded = loadEmbedded()

func loadEmbedded() map[string]*Script {
	m := make(map[string]*Script)
	err := fs.WalkDir(files, "lua", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(path.Base(p), ".lua")
		m[name] = New(name, string(src))
		return nil
	})
	if err != nil {
		// The files are compiled into the binary; failing to read them is a broken build.
		panic("gatehouse: reading embedded scripts: " + err.Error())
	}
	return m
}

// Lookup returns the embedded script with the given name (its file name in lua/ without ".lua").
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
