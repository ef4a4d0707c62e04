package session_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// Sessions alone, with nothing else of gatehouse: one Store over a go-redis client, the
// middleware around the handlers, and the session from the request's context. docs/sessions.md
// starts with this program.
func Example_quickStart() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	store, err := session.NewStore(rdb) // idle timeout 30 minutes, lifetime 12 hours
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		visits := s.GetInt("visits") + 1
		s.Put("visits", visits) // saved by the middleware before the response starts
		fmt.Fprintf(w, "user %q, visit %d\n", s.UserID(), visits)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		userID := r.FormValue("user") // after checking the password
		// A new token for the signed-in session (no fixation), sent before anything is written.
		if err := store.Login(r.Context(), s, userID); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := store.Destroy(r.Context(), s); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})

	// The cookie is Secure: browsers keep it over HTTPS, and over plain HTTP on localhost.
	log.Fatal(http.ListenAndServe("localhost:8080", session.Middleware(store)(mux)))
}
