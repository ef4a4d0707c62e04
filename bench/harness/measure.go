package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// snapshot is what the harness reads before and after a measured window: the process' allocations
// and CPU time, and the Redis server's CPU time and network traffic.
type snapshot struct {
	at        time.Time
	mallocs   uint64
	clientCPU time.Duration // user + system time of this process (getrusage)
	redisCPU  time.Duration // used_cpu_user + used_cpu_sys of the server (INFO CPU)
	netBytes  int64         // total_net_input_bytes + total_net_output_bytes (INFO stats)
	commands  int64         // total_commands_processed (INFO stats)
	reads     int64         // total_reads_processed (INFO stats): socket reads the server made
	// busy and total are the machine's CPU time in /proc/stat (all processes, all cores), in
	// clock ticks: busy excludes idle and iowait. Zero where /proc/stat is missing.
	busy, total int64
}

// take reads a snapshot. ctl is a client of its own, so that the INFO call does not wait behind the
// benchmark's commands for a pooled connection.
func take(ctx context.Context, ctl *redis.Client) (snapshot, error) {
	var s snapshot
	info, err := ctl.Info(ctx, "cpu", "stats").Result()
	if err != nil {
		return s, fmt.Errorf("harness: INFO: %w", err)
	}
	f := parseInfo(info)
	user, err1 := strconv.ParseFloat(f["used_cpu_user"], 64)
	sys, err2 := strconv.ParseFloat(f["used_cpu_sys"], 64)
	in, err3 := strconv.ParseInt(f["total_net_input_bytes"], 10, 64)
	out, err4 := strconv.ParseInt(f["total_net_output_bytes"], 10, 64)
	cmds, err5 := strconv.ParseInt(f["total_commands_processed"], 10, 64)
	reads, err6 := strconv.ParseInt(f["total_reads_processed"], 10, 64)
	for _, e := range []error{err1, err2, err3, err4, err5, err6} {
		if e != nil {
			return s, fmt.Errorf("harness: reading INFO: %w", e)
		}
	}
	s.redisCPU = time.Duration((user + sys) * float64(time.Second))
	s.netBytes = in + out
	s.commands, s.reads = cmds, reads
	s.busy, s.total = machineCPU()

	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("harness: getrusage: %w", err)
	}
	s.clientCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.mallocs = ms.Mallocs
	s.at = time.Now()
	return s, nil
}

// parseInfo returns the "field:value" lines of an INFO reply as a map.
func parseInfo(info string) map[string]string {
	f := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = v
		}
	}
	return f
}

// machineCPU reads the first line of /proc/stat: the CPU time of the whole machine, busy and in
// all, in clock ticks; zeros where it cannot be read.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		if i >= 8 { // guest time is counted in user time already
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}
