package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/redis/go-redis/v9"
)

// describeMachine reads the CPU model, the Go and Redis versions and the load.
func describeMachine(ctx context.Context, ctl *redis.Client) (Machine, error) {
	m := Machine{
		CPU: cpuModel(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(),
		GoRedis: moduleVersion("github.com/redis/go-redis/v9"), LoadAvgStart: loadAvg(),
	}
	info, err := ctl.Info(ctx, "server").Result()
	if err != nil {
		return m, fmt.Errorf("harness: INFO server: %w", err)
	}
	m.Redis = parseInfo(info)["redis_version"]
	return m, nil
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "" where /proc/loadavg is missing.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// moduleVersion returns the version of a module linked into this binary: "(this tree)" for one
// replaced by a local directory, "" for one not linked.
func moduleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path != path {
			continue
		}
		if d.Replace != nil {
			if v := d.Replace.Version; v != "" && v != "(devel)" {
				return v
			}
			return "(this tree)"
		}
		return d.Version
	}
	return ""
}

func moduleVersions(paths []string) map[string]string {
	v := make(map[string]string, len(paths))
	for _, p := range paths {
		v[p] = moduleVersion(p)
	}
	return v
}
