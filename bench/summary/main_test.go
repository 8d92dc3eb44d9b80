package main

import (
	"math"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{math.NaN(), 5, 1}, 3}, // a failed run does not count
		{[]float64{7}, 7},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := median([]float64{math.NaN()}); !math.IsNaN(got) {
		t.Errorf("median of only failures = %v, want NaN", got)
	}
}

const raw = "round\tworkload\ttransport\tclients\ttarget\ttps\tp50_ms\tp99_ms\tcpu_us_per_tx\n" +
	"1\tselect-simple-100\tplain\t100\tdirect\t8000\t10\t20\t-\n" +
	"1\tselect-simple-100\tplain\t100\tpgbouncer\t6000\t14\t30\t25\n" +
	"1\tselect-simple-100\tplain\t100\tedgepool\t6600\t13\t27\t22\n" +
	"2\tselect-simple-100\tplain\t100\tdirect\t8200\t10\t22\t-\n" +
	"2\tselect-simple-100\tplain\t100\tpgbouncer\t6200\t14\t31\t24\n" +
	"2\tselect-simple-100\tplain\t100\tedgepool\tFAILED\t-\t-\t-\n" +
	"3\tselect-simple-100\tplain\t100\tdirect\t7800\t11\t21\t-\n" +
	"3\tselect-simple-100\tplain\t100\tpgbouncer\t5800\t15\t29\t26\n" +
	"3\tselect-simple-100\tplain\t100\tedgepool\t6400\t13\t26\t23\n" +
	"1\tselect-prepared-100\tplain\t100\tdirect\t12000\t7\t15\t-\n" +
	"1\tselect-prepared-100\tplain\t100\tedgepool\t10800\t8\t18\t20\n"

func TestTableAndChart(t *testing.T) {
	runs, err := parseRuns(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	cells := medians(runs)
	var out strings.Builder
	writeTable(&out, cells)
	table := out.String()
	for _, want := range []string{
		// medians 8000, 6000 and (6600+6400)/2 = 6500: ratios 0.81 and 1.08; p99 26.5/30
		"| select-simple-100 | 100 | plain | 8000 (21.00 ms) | 6000 (30.00 ms) | 6500 (26.50 ms) | 0.81 | 1.08 | 0.88 | 25.0 / 22.5 |",
		"| select-prepared-100 | 100 | plain | 12000 (15.00 ms) | n/a | 10800 (18.00 ms) | 0.90 | — | — | — / 20.0 |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks\n%s\ngot\n%s", want, table)
		}
	}
	if strings.Contains(table, "Relay models") {
		t.Error("the relay-models table appeared without model runs")
	}
	svg := chart(cells)
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 6 {
		t.Errorf("chart: want an svg with 3 lines per panel, got %d polylines", strings.Count(svg, "<polyline"))
	}
}

// TestModelsTable: runs of the relay models get their own table, as ratios to PgBouncer; a
// model's failed run is a dash, not a number.
func TestModelsTable(t *testing.T) {
	runs, err := parseRuns(strings.NewReader(raw +
		"1\tselect-simple-100\tplain\t100\tmodel-goroutine\t5700\t14\t30\t28\n" +
		"1\tselect-simple-100\tplain\t100\tmodel-loop\t6900\t12\t25\t19\n" +
		"1\tselect-prepared-100\tplain\t100\tmodel-loop\tFAILED\t-\t-\t-\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	writeTable(&out, medians(runs))
	writeModelsTable(&out, medians(runs))
	for _, want := range []string{
		"**Relay models**",
		"| select-simple-100 | 100 | 6000 | 1.08 | 0.95 | 1.15 | 25.0 / 22.5 / 28.0 / 19.0 |",
		"| select-prepared-100 | 100 | n/a | — | — | — | — / 20.0 / — / — |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks\n%s\ngot\n%s", want, out.String())
		}
	}
}
