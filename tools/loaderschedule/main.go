// Command loaderschedule computes the trace replay's schedule with Go's math/rand, draw
// for draw as the original artifact's loader (invitro, commit 0b0d6d7) computes it.
//
// Input on stdin, JSON:
//
//	{"seed": 42, "functions": [{"counts": [n per minute, ...],
//	  "runtime": [ms at percentiles 0, 1, 25, 50, 75, 99, 100],
//	  "memory": [MiB at percentiles 1, 5, 25, 50, 75, 95, 99, 100]}, ...]}
//
// Output on stdout, CSV without a header, one line per invocation, functions in input
// order, then minutes, then invocations: function,minute,index,send_s,runtime_ms
// (send_s in the shortest form that reads back as the same float64).
//
// Two generators, both seeded with seed, live for the whole trace. The arrival one draws
// n exponential values per minute with n > 0 invocations (none for an idle minute); the
// gaps are those values scaled to sum to 60 s, in microseconds, and a zero gap goes in
// front, so the minute has n + 1 invocations, the last on the minute's end. The
// specification one draws, per invocation (all n + 1): a runtime quantile, a memory
// quantile, an integer inside the runtime's percentile bracket (none when the bracket is
// empty or the quantile is 0), and one inside the memory's (none when the bracket is
// empty or the quantile is at most 0.01). The memory value is not used, but its draw
// moves the generator. Runtimes are clamped to 1 ms … 60 s.
//
// Standard library only, so that it builds in seconds.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"strconv"
)

type function struct {
	Counts  []int     `json:"counts"`
	Runtime []float64 `json:"runtime"`
	Memory  []float64 `json:"memory"`
}

type input struct {
	Seed      int64      `json:"seed"`
	Functions []function `json:"functions"`
}

const (
	microsecondsPerSecond = 1_000_000.0
	minRuntimeMs          = 1
	maxRuntimeMs          = 60_000
)

// Upper quantile of each bracket, lowest first; bracket i lies between percentile i and i+1.
var runtimeBrackets = []float64{0.01, 0.25, 0.50, 0.75, 0.99}
var memoryBrackets = []float64{0.05, 0.25, 0.50, 0.75, 0.95, 0.99}

// intBetween is a whole number in [lo, hi) after truncating both bounds, or lo when they meet.
func intBetween(r *rand.Rand, lo, hi float64) (int, error) {
	a, b := int(lo), int(hi)
	switch {
	case b < a:
		return 0, fmt.Errorf("percentile bracket [%v, %v] is decreasing", lo, hi)
	case a == b:
		return a, nil
	}
	return a + r.Intn(b-a), nil
}

// bracket is the index of the first upper bound that q does not exceed (len(bounds) past the last).
func bracket(q float64, bounds []float64) int {
	for i, upper := range bounds {
		if q <= upper {
			return i
		}
	}
	return len(bounds)
}

// runtimeMs draws one invocation's specification and returns its runtime (ms, clamped).
func runtimeMs(r *rand.Rand, fn *function) (int, error) {
	runQ, memQ := r.Float64(), r.Float64()
	runtime := int(fn.Runtime[0])
	if runQ != 0 {
		i := bracket(runQ, runtimeBrackets)
		var err error
		if runtime, err = intBetween(r, fn.Runtime[i], fn.Runtime[i+1]); err != nil {
			return 0, fmt.Errorf("runtime: %w", err)
		}
	}
	if memQ > 0.01 {
		i := bracket(memQ, memoryBrackets)
		if _, err := intBetween(r, fn.Memory[i], fn.Memory[i+1]); err != nil {
			return 0, fmt.Errorf("memory: %w", err)
		}
	}
	return min(maxRuntimeMs, max(minRuntimeMs, runtime)), nil
}

func run(in *input, out *bufio.Writer) error {
	arrivals := rand.New(rand.NewSource(in.Seed))
	specs := rand.New(rand.NewSource(in.Seed))
	line := make([]byte, 0, 64)
	for f := range in.Functions {
		fn := &in.Functions[f]
		if len(fn.Runtime) != 7 || len(fn.Memory) != 8 {
			return fmt.Errorf("function %d: want 7 runtime and 8 memory percentiles, got %d and %d",
				f, len(fn.Runtime), len(fn.Memory))
		}
		for minute, n := range fn.Counts {
			if n <= 0 {
				continue
			}
			draws := make([]float64, n)
			total := 0.0
			for i := range draws {
				draws[i] = arrivals.ExpFloat64()
				total += draws[i]
			}
			start := float64(minute) * 60
			elapsed := 0.0 // seconds into the minute; the first invocation has a zero gap
			for index := 0; index <= n; index++ {
				if index > 0 {
					gapUs := draws[index-1] / total * microsecondsPerSecond * 60
					elapsed += gapUs / microsecondsPerSecond
				}
				runtime, err := runtimeMs(specs, fn)
				if err != nil {
					return fmt.Errorf("function %d: %w", f, err)
				}
				line = strconv.AppendInt(line[:0], int64(f), 10)
				line = append(line, ',')
				line = strconv.AppendInt(line, int64(minute), 10)
				line = append(line, ',')
				line = strconv.AppendInt(line, int64(index), 10)
				line = append(line, ',')
				line = strconv.AppendFloat(line, start+elapsed, 'g', -1, 64)
				line = append(line, ',')
				line = strconv.AppendInt(line, int64(runtime), 10)
				line = append(line, '\n')
				if _, err := out.Write(line); err != nil {
					return err
				}
			}
		}
	}
	return out.Flush()
}

func main() {
	var in input
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "loaderschedule: reading the input: %v\n", err)
		os.Exit(2)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	if err := run(&in, out); err != nil {
		fmt.Fprintf(os.Stderr, "loaderschedule: %v\n", err)
		os.Exit(1)
	}
}
