//go:build unix

package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// terminalWidth reports whether w is a terminal and its width in columns
// (0 when the terminal does not report a size: CI runners, script(1),
// some `docker -t`).
func terminalWidth(w io.Writer) (cols int, isTTY bool) {
	if !isTerminal(w) {
		return 0, false
	}
	f := w.(*os.File)
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, true
	}
	return int(ws.Col), true
}
