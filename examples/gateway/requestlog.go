package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// observe traces and logs each request. It starts the request's server span (continuing the
// caller's trace when the request carries one), named by spanName, and once next has answered it
// logs one line at Info. Both hold the method, the route pattern that served the request (none for
// a 404, a redirect, or a request the session middleware answered before routing) and the status;
// the log line adds the duration. Neither holds the path (under /api/ it is the client's, and may
// hold identifiers), the query, a cookie, a session token, a user ID, the client's address (the
// limiter's key for a visitor) or its user agent: otelhttp's handler records the path, the
// address and the user agent on every span, which is why the demo does not use it.
func observe(log *slog.Logger, next http.Handler) http.Handler {
	tracer := otel.Tracer("github.com/gatehouse/gatehouse/examples/gateway")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, spanName(r), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(method(r))))
		defer span.End()
		var pattern string
		r = r.WithContext(context.WithValue(ctx, routeKey{}, &pattern))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK // nothing written: the implicit 200
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, "")
		}
		attrs := []slog.Attr{slog.String("method", method(r))}
		if pattern != "" {
			attrs = append(attrs, slog.String("pattern", pattern))
			_, route, _ := strings.Cut(pattern, " ") // "GET /me": the route is the path part
			if route == "" {
				route = pattern
			}
			span.SetAttributes(semconv.HTTPRoute(route))
		}
		attrs = append(attrs, slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)))
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// spanName names a request's span by method and the first segment of its path when that is one
// of the gateway's routes (/api, /login, ...), never by the full path, which may hold identifiers.
func spanName(r *http.Request) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch seg {
	case "", "api", "login", "logout", "me":
		return method(r) + " /" + seg
	}
	return method(r)
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
