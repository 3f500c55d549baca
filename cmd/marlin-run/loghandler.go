package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// lineHandler is the slog handler of --log-format text: "15:04:05 LEVEL
// message key=value ...", the clock format of the run display's lines,
// so that a plain log reads as one stream.
type lineHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	buf   *bytes.Buffer
	inner slog.Handler // formats the attributes into buf
}

func newLineHandler(w io.Writer, level slog.Leveler) *lineHandler {
	buf := new(bytes.Buffer)
	inner := slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}})
	return &lineHandler{mu: new(sync.Mutex), w: w, buf: buf, inner: inner}
}

func (h *lineHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	line := fmt.Sprintf("%s %s %s", r.Time.Format("15:04:05"), r.Level, r.Message)
	if attrs := strings.TrimSpace(h.buf.String()); attrs != "" {
		line += " " + attrs
	}
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{mu: h.mu, w: h.w, buf: h.buf, inner: h.inner.WithAttrs(as)}
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	return &lineHandler{mu: h.mu, w: h.w, buf: h.buf, inner: h.inner.WithGroup(name)}
}
