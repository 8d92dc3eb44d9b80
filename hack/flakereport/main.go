// Command flakereport reads `go test -json` output (of a run with -count=N) on stdin and lists
// every test that failed at least once, with how often, and every package that failed outside
// a test (build error, TestMain, panic, timeout). It exits 1 when it lists anything.
//
//	go test -count=5 -json ./... | go run ./hack/flakereport -runs 5
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
)

type event struct {
	Action  string
	Package string
	Test    string
}

func main() {
	runs := flag.Int("runs", 1, "how many times each test ran (go test -count)")
	flag.Parse()
	failed := map[string]int{}  // "package Test" → failures
	passed := map[string]bool{} // packages that passed or failed with a test listed
	testFailed := map[string]bool{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	lines := 0
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // a line go test -json did not write (build output)
		}
		lines++
		switch {
		case e.Action == "fail" && e.Test != "":
			failed[e.Package+" "+e.Test]++
			testFailed[e.Package] = true
		case e.Action == "fail":
			passed[e.Package] = false
		case e.Action == "pass" && e.Test == "":
			passed[e.Package] = true
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "flakereport:", err)
		os.Exit(2)
	}
	if lines == 0 {
		fmt.Fprintln(os.Stderr, "flakereport: no go test -json events on stdin")
		os.Exit(2)
	}
	var report []string
	for name, n := range failed {
		report = append(report, fmt.Sprintf("FAIL %d/%d  %s", n, *runs, name))
	}
	for pkg, ok := range passed {
		if !ok && !testFailed[pkg] {
			report = append(report, fmt.Sprintf("FAIL package %s (outside any test: build, TestMain, panic or timeout)", pkg))
		}
	}
	sort.Strings(report)
	for _, line := range report {
		fmt.Println(line)
	}
	if len(report) > 0 {
		fmt.Printf("%d failing (of %d runs each)\n", len(report), *runs)
		os.Exit(1)
	}
	fmt.Printf("no test failed in %d runs\n", *runs)
}
