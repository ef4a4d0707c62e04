package harness

import "time"

// Report is everything a run measured, written as JSON; the tables and the chart are drawn from it.
type Report struct {
	Machine    Machine         `json:"machine"`
	Settings   Settings        `json:"settings"`
	Started    time.Time       `json:"started"`
	Finished   time.Time       `json:"finished"`
	Contenders []ContenderInfo `json:"contenders"`
	// Failed lists the contenders that could not be set up in this run.
	Failed []Failure `json:"failed,omitempty"`
	// NotBuilt lists libraries that were tried and left out of the module, with why.
	NotBuilt []Failure `json:"not_built,omitempty"`
	Results  []Result  `json:"results"`
}

// Machine describes where the run took place.
type Machine struct {
	CPU          string `json:"cpu"`
	Cores        int    `json:"cores"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	OS           string `json:"os"`
	Go           string `json:"go"`
	Redis        string `json:"redis"`
	GoRedis      string `json:"go_redis"`
	Gatehouse    string `json:"gatehouse"`
	LoadAvgStart string `json:"load_avg_start"`
	LoadAvgEnd   string `json:"load_avg_end"`
	Note         string `json:"note,omitempty"`
}

// Settings are the run's parameters, as the command was given them.
type Settings struct {
	RoundSeconds      float64 `json:"round_seconds"`
	WarmupSeconds     float64 `json:"warmup_seconds"`
	Rounds            int     `json:"rounds"`
	Goroutines        []int   `json:"goroutines"`
	SessionGoroutines []int   `json:"session_goroutines"`
	Keys              int     `json:"keys"`
	Sessions          int     `json:"sessions"`
	PoolSize          int     `json:"pool_size"`
	Clients           string  `json:"clients"`
	KeyPattern        string  `json:"key_pattern"`
	Limits            string  `json:"limits"`
	Experiment        string  `json:"experiment"`
}

// ContenderInfo describes one contender (in one variant) and the memory its state takes.
type ContenderInfo struct {
	ID        string            `json:"id"` // contender ID, "@variant" appended when there is one
	Contender string            `json:"contender"`
	Name      string            `json:"name"`
	Kind      Kind              `json:"kind"`
	Variant   string            `json:"variant,omitempty"`
	Settings  VariantSettings   `json:"variant_settings"`
	Gatehouse bool              `json:"gatehouse,omitempty"`
	Versions  map[string]string `json:"versions"`
	Pool      string            `json:"pool"`
	Notes     string            `json:"notes,omitempty"`
	// MemoryPerID is MEMORY USAGE summed over every key one identifier (a limiter key after a few
	// decisions, or a session after a few requests) leaves in Redis, in bytes.
	MemoryPerID float64 `json:"memory_bytes_per_id"`
	// KeysPerID is how many Redis keys one identifier leaves.
	KeysPerID float64 `json:"keys_per_id"`
}

// VariantSettings are the settings a contender ran under.
type VariantSettings struct {
	PoolSize int    `json:"pool_size"`
	Separate bool   `json:"separate_client,omitempty"`
	Keys     int    `json:"keys"`
	Pattern  string `json:"key_pattern"`
	Limits   string `json:"limits,omitempty"`
	Hogs     int    `json:"busy_processes,omitempty"`
	// AutoPipeline is the client's auto-pipeliner options when not go-redis' defaults.
	AutoPipeline string `json:"auto_pipeline,omitempty"`
}

// Failure is a contender left out, and why.
type Failure struct {
	ID     string `json:"id,omitempty"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Figures are what a measured window gives, per operation where not said otherwise.
type Figures struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	// AllocsPerOp is runtime.MemStats.Mallocs' growth over the window ÷ operations: the library,
	// its Redis client and the harness' loop (which allocates nothing itself).
	AllocsPerOp float64 `json:"allocs_per_op"`
	// RedisCPUus is the server's used_cpu_user + used_cpu_sys growth ÷ operations, in µs.
	RedisCPUus float64 `json:"redis_cpu_us_per_op"`
	// ClientCPUus is this process' user + system time growth (getrusage) ÷ operations, in µs.
	ClientCPUus float64 `json:"client_cpu_us_per_op"`
	// WireBytesPerOp is total_net_input_bytes + total_net_output_bytes growth ÷ operations.
	WireBytesPerOp float64 `json:"wire_bytes_per_op"`
	// CommandsPerOp is total_commands_processed growth ÷ operations; it counts the commands a
	// script runs as well as the script call.
	CommandsPerOp float64 `json:"commands_per_op"`
	// ReadsPerOp is total_reads_processed growth ÷ operations: the socket reads the server made,
	// about one per round trip, so 1/ReadsPerOp is about the operations a pipeline carried.
	ReadsPerOp float64 `json:"reads_per_op"`
	// OtherCores is the CPU the rest of the machine used meanwhile, in cores: /proc/stat's busy
	// time less this process' and the server's, over the window.
	OtherCores float64 `json:"other_cores"`
}

// fields lists the figures, for taking the median of each.
func (f *Figures) fields() []*float64 {
	return []*float64{&f.OpsPerSec, &f.P50us, &f.P99us, &f.AllocsPerOp, &f.RedisCPUus, &f.ClientCPUus,
		&f.WireBytesPerOp, &f.CommandsPerOp, &f.ReadsPerOp, &f.OtherCores}
}

// Result is one contender at one concurrency: the median of each figure over its rounds, and the
// rounds.
type Result struct {
	ID         string `json:"id"`
	Goroutines int    `json:"goroutines"`
	Figures
	OpsMin     float64 `json:"ops_per_sec_min"`
	OpsMax     float64 `json:"ops_per_sec_max"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Rounds     []Round `json:"rounds"`
}

// Round is one measured window.
type Round struct {
	Position   int     `json:"position"` // the contender's place in this round's order
	Seconds    float64 `json:"seconds"`
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Figures
}

// Contender returns the description of the contender with the given ID, or nil.
func (r *Report) Contender(id string) *ContenderInfo {
	for i := range r.Contenders {
		if r.Contenders[i].ID == id {
			return &r.Contenders[i]
		}
	}
	return nil
}

// Result returns the result of the contender with the given ID at g goroutines, or nil.
func (r *Report) Result(id string, g int) *Result {
	for i := range r.Results {
		if r.Results[i].ID == id && r.Results[i].Goroutines == g {
			return &r.Results[i]
		}
	}
	return nil
}
