// Command edgepool is the single binary of edgepool: the operator ("manager") and the data
// plane ("pooler") ship in one image so they never skew.
package main

import (
	"fmt"
	"os"
)

// subcommands maps a subcommand name to its entry point; each lives in its own file.
var subcommands = map[string]struct {
	run   func(args []string) error
	usage string
}{
	"manager": {runManager, "run the Kubernetes operator"},
	"pooler":  {runPooler, "run the connection pooler (--config FILE)"},
	"keygen":  {runKeygen, "print a new API key and its pooler config entry"},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := subcommands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "edgepool: unknown subcommand %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "edgepool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: edgepool <subcommand> [flags]\n\nsubcommands:")
	for _, name := range []string{"manager", "pooler", "keygen"} {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", name, subcommands[name].usage)
	}
}
