//go:build !unix

package main

import "io"

// terminalWidth reports whether w is a terminal and its width in columns;
// off Unix the size is not queried and a terminal counts as 80 columns.
func terminalWidth(w io.Writer) (cols int, isTTY bool) {
	if !isTerminal(w) {
		return 0, false
	}
	return 80, true
}
