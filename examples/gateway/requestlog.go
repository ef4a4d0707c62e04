package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// logRequests logs one line per request at Info, once next has answered: the method, the route
// pattern that served it (none for a 404, a redirect, or a request the session middleware answered
// before routing), the status and the duration. It never logs the path (under /api/ it is the
// client's, and may hold identifiers), the query, a cookie, a session token, a user ID or a
// limiter key.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var pattern string
		r = r.WithContext(context.WithValue(r.Context(), routeKey{}, &pattern))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK // nothing written: the implicit 200
		}
		attrs := []slog.Attr{slog.String("method", method(r))}
		if pattern != "" {
			attrs = append(attrs, slog.String("pattern", pattern))
		}
		attrs = append(attrs, slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)))
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// routeKey is the context key of the request log's note of the route pattern.
type routeKey struct{}

// routed wraps the handler registered for pattern so that the request log names the route.
func routed(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := r.Context().Value(routeKey{}).(*string); ok {
			*p = pattern
		}
		h.ServeHTTP(w, r)
	})
}

// method returns r's method when it is a standard one, and "_OTHER" otherwise (as OpenTelemetry's
// HTTP conventions do): the method is the client's to choose.
func method(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return r.Method
	}
	return "_OTHER"
}

// statusWriter notes the status of the response it writes.
type statusWriter struct {
	http.ResponseWriter
	status int // 0 until the status is written
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // a 1xx is followed by the final status
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer beneath (Flush, Hijack, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
