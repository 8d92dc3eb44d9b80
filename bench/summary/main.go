// Command summary turns the raw runs of `make bench` (bench/run.sh) into the report's main
// table and its chart.
//
// Input (-in): tab-separated lines, one per pgbench run, with a header:
//
//	round  workload  transport  clients  target  tps  p50_ms  p99_ms  cpu_us_per_tx
//
// (cpu_us_per_tx is the pooler process's CPU time per transaction, "-" for direct). For every
// workload and target it takes the median over the rounds of each column and prints a Markdown
// table with edgepool's ratios to direct PostgreSQL and to PgBouncer; with -svg it draws tps and
// p99 latency against the client count for the select-only simple-protocol workloads, plain and
// TLS, one line per target.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func main() {
	in := flag.String("in", "", "raw runs (TSV)")
	svg := flag.String("svg", "", "write the chart here")
	flag.Parse()
	if err := run(*in, *svg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
}

func run(in, svgPath string, out io.Writer) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	runs, err := parseRuns(f)
	if err != nil {
		return err
	}
	cells := medians(runs)
	writeTable(out, cells)
	writeModelsTable(out, cells)
	if svgPath != "" {
		return os.WriteFile(svgPath, []byte(chart(cells)), 0o644)
	}
	return nil
}

// runRow is one pgbench run; NaN marks a missing value (a failed run or "-").
type runRow struct {
	workload, transport, target string
	clients                     int
	tps, p50, p99, cpu          float64
}

func parseRuns(r io.Reader) ([]runRow, error) {
	sc := bufio.NewScanner(r)
	var rows []runRow
	line := 0
	for sc.Scan() {
		line++
		f := strings.Split(sc.Text(), "\t")
		if line == 1 || len(f) == 0 || f[0] == "" {
			continue // header
		}
		if len(f) != 9 {
			return nil, fmt.Errorf("line %d: %d fields, want 9", line, len(f))
		}
		clients, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("line %d: clients %q", line, f[3])
		}
		rows = append(rows, runRow{workload: f[1], transport: f[2], clients: clients, target: f[4],
			tps: num(f[5]), p50: num(f[6]), p99: num(f[7]), cpu: num(f[8])})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("no runs")
	}
	return rows, nil
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// cell is the median of one workload on one target over the rounds.
type cell struct {
	workload, transport, target string
	clients, rounds             int
	tps, p50, p99, cpu          float64
}

type key struct{ workload, target string }

// medians groups runs by workload and target, keeping the workloads' first-seen order.
func medians(runs []runRow) []cell {
	var order []key
	groups := map[key][]runRow{}
	for _, r := range runs {
		k := key{r.workload, r.target}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	cells := make([]cell, 0, len(order))
	for _, k := range order {
		g := groups[k]
		col := func(get func(runRow) float64) float64 {
			var v []float64
			for _, r := range g {
				v = append(v, get(r))
			}
			return median(v)
		}
		cells = append(cells, cell{workload: k.workload, transport: g[0].transport, target: k.target,
			clients: g[0].clients, rounds: len(g),
			tps: col(func(r runRow) float64 { return r.tps }), p50: col(func(r runRow) float64 { return r.p50 }),
			p99: col(func(r runRow) float64 { return r.p99 }), cpu: col(func(r runRow) float64 { return r.cpu })})
	}
	return cells
}

// median of the values that are numbers; NaN when there are none (every run failed).
func median(v []float64) float64 {
	var ok []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			ok = append(ok, x)
		}
	}
	if len(ok) == 0 {
		return math.NaN()
	}
	sort.Float64s(ok)
	n := len(ok)
	if n%2 == 1 {
		return ok[n/2]
	}
	return (ok[n/2-1] + ok[n/2]) / 2
}

var targets = []string{"direct", "pgbouncer", "edgepool"}

func find(cells []cell, workload, target string) (cell, bool) {
	for _, c := range cells {
		if c.workload == workload && c.target == target {
			return c, true
		}
	}
	return cell{}, false
}

func writeTable(w io.Writer, cells []cell) {
	fmt.Fprintln(w, "| workload | clients | transport | direct tps (p99) | PgBouncer tps (p99) | edgepool tps (p99) | edgepool/direct | edgepool/PgBouncer | p99 edgepool/PgBouncer | pooler CPU µs/tx PgBouncer / edgepool |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	var seen []string
	for _, c := range cells {
		if slices.Contains(seen, c.workload) {
			continue
		}
		seen = append(seen, c.workload)
		row := map[string]cell{}
		for _, t := range targets {
			if x, ok := find(cells, c.workload, t); ok {
				row[t] = x
			}
		}
		show := func(t string) string {
			x, ok := row[t]
			if !ok {
				return "n/a"
			}
			if math.IsNaN(x.tps) {
				return "FAILED"
			}
			return fmt.Sprintf("%.0f (%s ms)", x.tps, fmtMS(x.p99))
		}
		ep, pb, dir := row["edgepool"], row["pgbouncer"], row["direct"]
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", c.workload, c.clients, c.transport,
			show("direct"), show("pgbouncer"), show("edgepool"),
			ratio(ep.tps, dir.tps, row, "direct"), ratio(ep.tps, pb.tps, row, "pgbouncer"),
			ratio(ep.p99, pb.p99, row, "pgbouncer"), fmtCPU(pb.cpu, row, "pgbouncer"), fmtCPU(ep.cpu, row, "edgepool"))
	}
}

// models are the lab relays of bench/relaymodels, run only when BENCH_TARGETS names them.
var models = []string{"model-goroutine", "model-loop"}

// writeModelsTable prints, when the runs include the relay models, their tps next to PgBouncer's
// and edgepool's, as ratios to PgBouncer, with each process's CPU per transaction.
func writeModelsTable(w io.Writer, cells []cell) {
	if !slices.ContainsFunc(cells, func(c cell) bool { return slices.Contains(models, c.target) }) {
		return
	}
	fmt.Fprintln(w, "\n**Relay models** (bench/relaymodels: byte relays without authentication or checks, one per concurrency model; tps as a ratio to PgBouncer, pooler CPU µs/tx)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | clients | PgBouncer tps | edgepool | goroutine model | loop model | CPU µs/tx PgBouncer / edgepool / goroutine / loop |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	var seen []string
	for _, c := range cells {
		if !slices.Contains(models, c.target) || slices.Contains(seen, c.workload) {
			continue
		}
		seen = append(seen, c.workload)
		row := map[string]cell{}
		for _, t := range append([]string{"pgbouncer", "edgepool"}, models...) {
			if x, ok := find(cells, c.workload, t); ok {
				row[t] = x
			}
		}
		pb := row["pgbouncer"]
		rel := func(t string) string { return ratio(row[t].tps, pb.tps, row, "pgbouncer") }
		pbTPS := "n/a"
		if _, ok := row["pgbouncer"]; ok {
			pbTPS = fmt.Sprintf("%.0f", pb.tps)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s / %s / %s / %s |\n", c.workload, c.clients, pbTPS,
			rel("edgepool"), rel("model-goroutine"), rel("model-loop"), fmtCPU(pb.cpu, row, "pgbouncer"),
			fmtCPU(row["edgepool"].cpu, row, "edgepool"), fmtCPU(row["model-goroutine"].cpu, row, "model-goroutine"),
			fmtCPU(row["model-loop"].cpu, row, "model-loop"))
	}
}

func ratio(a, b float64, row map[string]cell, other string) string {
	if _, ok := row[other]; !ok || math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func fmtMS(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtCPU(v float64, row map[string]cell, t string) string {
	if _, ok := row[t]; !ok || math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

// The chart: two panels side by side (tps, p99) over the select-only simple-protocol workloads,
// x = clients on a log scale, one line per target and transport.
const (
	panelW, panelH = 420.0, 300.0
	marginL        = 64.0
	marginT        = 40.0
	marginB        = 48.0
	gap            = 90.0
)

var colors = map[string]string{"direct": "#6b7280", "pgbouncer": "#2563eb", "edgepool": "#dc2626"}

var names = map[string]string{"direct": "direct PostgreSQL", "pgbouncer": "PgBouncer", "edgepool": "edgepool"}

// series are the (clients, value) points of one target and transport, by client count.
type series struct {
	target, transport string
	points            [][2]float64 // clients, value
}

func chartSeries(cells []cell, value func(cell) float64) []series {
	var out []series
	for _, tr := range []string{"plain", "tls"} {
		for _, t := range targets {
			s := series{target: t, transport: tr}
			for _, c := range cells {
				if c.target == t && c.transport == tr && strings.HasPrefix(c.workload, "select-simple") {
					if v := value(c); !math.IsNaN(v) {
						s.points = append(s.points, [2]float64{float64(c.clients), v})
					}
				}
			}
			sort.Slice(s.points, func(i, j int) bool { return s.points[i][0] < s.points[j][0] })
			if len(s.points) > 0 {
				out = append(out, s)
			}
		}
	}
	return out
}

func chart(cells []cell) string {
	var b strings.Builder
	width := marginL + panelW + gap + marginL + panelW + 30
	height := marginT + panelH + marginB + 60
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	panel(&b, marginL, "pgbench -S (simple protocol): transactions per second", "tps",
		chartSeries(cells, func(c cell) float64 { return c.tps }))
	panel(&b, marginL+panelW+gap+marginL, "p99 latency (ms)", "ms",
		chartSeries(cells, func(c cell) float64 { return c.p99 }))
	// Legend.
	y := marginT + panelH + marginB + 20
	x := marginL
	for _, t := range targets {
		for _, tr := range []string{"plain", "tls"} {
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2.5"%s/>`+"\n",
				x, y, x+28, y, colors[t], dash(tr))
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s%s</text>`+"\n", x+34, y+4, names[t], map[string]string{"plain": "", "tls": " (TLS)"}[tr])
			x += 170
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func dash(transport string) string {
	if transport == "tls" {
		return ` stroke-dasharray="6 4"`
	}
	return ""
}

func panel(b *strings.Builder, x0 float64, title, unit string, ss []series) {
	var xs, ys []float64
	for _, s := range ss {
		for _, p := range s.points {
			xs = append(xs, p[0])
			ys = append(ys, p[1])
		}
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-size="14" font-weight="bold">%s</text>`+"\n", x0, marginT-16, title)
	if len(xs) == 0 {
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f">no data</text>`+"\n", x0+20, marginT+40)
		return
	}
	minX, maxX := slices.Min(xs), slices.Max(xs)
	if minX == maxX {
		minX, maxX = minX/2, maxX*2
	}
	maxY := niceCeil(slices.Max(ys) * 1.08)
	lx := func(v float64) float64 {
		return x0 + (math.Log(v)-math.Log(minX))/(math.Log(maxX)-math.Log(minX))*panelW
	}
	ly := func(v float64) float64 { return marginT + panelH - v/maxY*panelH }
	// Axes and grid.
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#9ca3af"/>`+"\n", x0, marginT, panelW, panelH)
	for i := 0; i <= 5; i++ {
		v := maxY * float64(i) / 5
		y := ly(v)
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e7eb"/>`+"\n", x0, y, x0+panelW, y)
		fmt.Fprintf(b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, tick(v))
	}
	var ticks []float64
	for _, v := range xs {
		if !slices.Contains(ticks, v) {
			ticks = append(ticks, v)
		}
	}
	for _, v := range ticks {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0f</text>`+"\n", lx(v), marginT+panelH+16, v)
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">clients (log scale)</text>`+"\n", x0+panelW/2, marginT+panelH+34)
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle" transform="rotate(-90 %.0f %.0f)">%s</text>`+"\n",
		x0-48, marginT+panelH/2, x0-48, marginT+panelH/2, unit)
	for _, s := range ss {
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", lx(p[0]), ly(p[1])))
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5"%s/>`+"\n",
			strings.Join(pts, " "), colors[s.target], dash(s.transport))
		for _, p := range s.points {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s%s, %.0f clients: %s %s</title></circle>`+"\n",
				lx(p[0]), ly(p[1]), colors[s.target], names[s.target], map[string]string{"plain": "", "tls": " (TLS)"}[s.transport],
				p[0], tick(p[1]), unit)
		}
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func tick(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
