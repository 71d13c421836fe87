// A second, independent reckoning of the original loader's schedule, for the tests only:
// it reads the trace's CSV files itself and follows the loader's structure (all of a
// function's inter-arrival times first, then its specifications, then the client's
// conversion to send times). Run: go run loader.go -trace DIR -minutes M [-rows 0,1,...].
// Prints row,minute,send_s,runtime_ms per invocation (send_s exact, shortest form).
package main

import (
	"bufio"
	"encoding/csv"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
)

func readCSV(path string) ([]string, [][]string) {
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		panic(err)
	}
	return records[0], records[1:]
}

// byFunction maps HashFunction to the named columns parsed as floats.
func byFunction(path string, names []string) map[string][]float64 {
	header, rows := readCSV(path)
	column := map[string]int{}
	for i, name := range header {
		column[name] = i
	}
	out := map[string][]float64{}
	for _, row := range rows {
		values := make([]float64, len(names))
		for i, name := range names {
			v, err := strconv.ParseFloat(row[column[name]], 64)
			if err != nil {
				panic(err)
			}
			values[i] = v
		}
		out[row[column["HashFunction"]]] = values
	}
	return out
}

func between(r *rand.Rand, lo, hi float64) int {
	if int(hi) < int(lo) {
		panic("decreasing bracket")
	}
	if int(hi) == int(lo) {
		return int(lo)
	}
	return r.Intn(int(hi)-int(lo)) + int(lo)
}

func main() {
	dir := flag.String("trace", "", "trace directory")
	minutes := flag.Int("minutes", 30, "minute columns to read")
	seed := flag.Int64("seed", 42, "seed")
	keep := flag.String("rows", "", "data rows to keep, comma-separated (default: all)")
	flag.Parse()

	header, invocations := readCSV(*dir + "/invocations.csv")
	first := 0
	for i, name := range header {
		if strings.EqualFold(name, "Trigger") {
			first = i + 1
		}
	}
	runtimes := byFunction(*dir+"/durations.csv", []string{"percentile_Average_0", "percentile_Average_1",
		"percentile_Average_25", "percentile_Average_50", "percentile_Average_75", "percentile_Average_99",
		"percentile_Average_100"})
	memories := byFunction(*dir+"/memory.csv", []string{"AverageAllocatedMb_pct1", "AverageAllocatedMb_pct5",
		"AverageAllocatedMb_pct25", "AverageAllocatedMb_pct50", "AverageAllocatedMb_pct75",
		"AverageAllocatedMb_pct95", "AverageAllocatedMb_pct99", "AverageAllocatedMb_pct100"})

	rows := []int{}
	if *keep == "" {
		for i := range invocations {
			rows = append(rows, i)
		}
	} else {
		for _, text := range strings.Split(*keep, ",") {
			i, err := strconv.Atoi(text)
			if err != nil {
				panic(err)
			}
			rows = append(rows, i)
		}
	}

	iatRand := rand.New(rand.NewSource(*seed))
	specRand := rand.New(rand.NewSource(*seed))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, row := range rows {
		record := invocations[row]
		hash := record[2]
		// inter-arrival times in µs, per minute, with a zero gap in front
		var iat []float64
		var perMinute []int
		for m := 0; m < *minutes; m++ {
			n, err := strconv.Atoi(record[first+m])
			if err != nil {
				panic(err)
			}
			if n == 0 {
				perMinute = append(perMinute, 0)
				continue
			}
			values := []float64{}
			sum := 0.0
			for i := 0; i < n; i++ {
				v := iatRand.ExpFloat64()
				values = append(values, v)
				sum += v
			}
			for i := range values {
				values[i] = values[i] / sum
				values[i] = values[i] * 1e6
				values[i] = values[i] * 60.0
			}
			iat = append(iat, 0.0)
			iat = append(iat, values...)
			perMinute = append(perMinute, n+1)
		}
		// specifications, one per invocation
		rt, mem := runtimes[hash], memories[hash]
		var specs []int
		for range iat {
			runQ := specRand.Float64()
			memQ := specRand.Float64()
			var runtime int
			switch {
			case runQ == 0:
				runtime = int(rt[0])
			case runQ <= 0.01:
				runtime = between(specRand, rt[0], rt[1])
			case runQ <= 0.25:
				runtime = between(specRand, rt[1], rt[2])
			case runQ <= 0.50:
				runtime = between(specRand, rt[2], rt[3])
			case runQ <= 0.75:
				runtime = between(specRand, rt[3], rt[4])
			case runQ <= 0.99:
				runtime = between(specRand, rt[4], rt[5])
			default:
				runtime = between(specRand, rt[5], rt[6])
			}
			switch {
			case memQ <= 0.01:
			case memQ <= 0.05:
				between(specRand, mem[0], mem[1])
			case memQ <= 0.25:
				between(specRand, mem[1], mem[2])
			case memQ <= 0.50:
				between(specRand, mem[2], mem[3])
			case memQ <= 0.75:
				between(specRand, mem[3], mem[4])
			case memQ <= 0.95:
				between(specRand, mem[4], mem[5])
			case memQ <= 0.99:
				between(specRand, mem[5], mem[6])
			default:
				between(specRand, mem[6], mem[7])
			}
			if runtime < 1 {
				runtime = 1
			}
			if runtime > 60000 {
				runtime = 60000
			}
			specs = append(specs, runtime)
		}
		// the client: absolute send times, the gaps summed within each minute
		k := 0
		for minute, count := range perMinute {
			elapsed := 0.0
			for i := 0; i < count; i++ {
				elapsed += iat[k] / 1e6
				fmt.Fprintf(out, "%d,%d,%s,%d\n", row, minute, strconv.FormatFloat(float64(minute)*60.+elapsed, 'g', -1, 64), specs[k])
				k++
			}
		}
	}
}
