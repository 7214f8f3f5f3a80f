// Renders an Ollama Modelfile TEMPLATE with Go's own text/template, as Ollama does: the template is the
// first argument's file, the data ({"Messages": [{"Role": ..., "Content": ...}]}) is JSON on stdin, the
// rendering goes to stdout. tests/export/test_go_template.py compares it with the Jinja rendering.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

type Message struct {
	Role    string
	Content string
}

type Data struct {
	Messages []Message
}

func main() {
	source, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tmpl, err := template.New("modelfile").Parse(string(source))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var data []Data
	if err := json.NewDecoder(os.Stdin).Decode(&data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out []string
	for _, d := range data {
		var b = new(stringWriter)
		if err := tmpl.Execute(b, d); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out = append(out, b.s)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

type stringWriter struct{ s string }

func (w *stringWriter) Write(p []byte) (int, error) { w.s += string(p); return len(p), nil }
