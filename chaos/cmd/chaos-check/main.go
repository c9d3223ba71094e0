// Command chaos-check re-checks a saved chaos run: it loads the run's
// history, runs the checker and prints the verdict.
//
//	chaos-check [-json] RUNDIR|HISTORY.jsonl
//
// It prints the human summary on stdout; with -json it writes the JSON
// report on stdout instead and the summary on stderr, so the output can be
// piped. The exit status is 0 when the run passed, 1 on violations and 2
// when the history cannot be read.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/raftplane/raftplane/chaos/check"
	"github.com/raftplane/raftplane/chaos/history"
)

func main() {
	jsonOut := flag.Bool("json", false, "write the JSON report to stdout (the summary goes to stderr)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: chaos-check [-json] RUNDIR|HISTORY.jsonl\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, history.FileName)
	}
	h, err := history.Load(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos-check: %v\n", err)
		os.Exit(2)
	}
	r := check.Check(h)
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "chaos-check: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprint(os.Stderr, r.Summary())
	} else {
		fmt.Print(r.Summary())
	}
	if !r.OK() {
		os.Exit(1)
	}
}
