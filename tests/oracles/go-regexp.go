// Compiles regular expressions with Go's own regexp package, the one cloudflared's ingress uses for a
// rule's `path` (ingress/ingress.go: `regexp.Compile(r.Path)`). kiln's test suite feeds it every path
// regex it accepts; this is kiln's own program, not cloudflared's code.
//
// stdin: a JSON array of strings; stdout: a JSON array, "" where the regex compiles, the error otherwise.
package main

import (
	"encoding/json"
	"os"
	"regexp"
)

func main() {
	var patterns []string
	if err := json.NewDecoder(os.Stdin).Decode(&patterns); err != nil {
		os.Stderr.WriteString("go-regexp: reading the patterns: " + err.Error() + "\n")
		os.Exit(2)
	}
	verdicts := make([]string, len(patterns))
	for i, p := range patterns {
		if _, err := regexp.Compile(p); err != nil {
			verdicts[i] = err.Error()
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(verdicts); err != nil {
		os.Stderr.WriteString("go-regexp: writing the verdicts: " + err.Error() + "\n")
		os.Exit(2)
	}
}
