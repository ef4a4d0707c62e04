package session_test

import (
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

func ExampleMiddleware() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	store, err := session.NewStore(rdb,
		session.WithIdleTimeout(30*time.Minute),
		session.WithLifetime(12*time.Hour),
	)
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		userID := "42" // after checking the password
		// A new token, in the user's slot; the old one stops working.
		if err := store.Login(r.Context(), s, userID); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.Put("flash", "Welcome back!")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		fmt.Fprintf(w, "%s %s\n", s.UserID(), s.PopString("flash"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		store.Destroy(r.Context(), s)
	})

	log.Fatal(http.ListenAndServe(":8080", session.Middleware(store)(mux)))
}

func ExampleStore_ListByUser() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	store, err := session.NewStore(rdb)
	if err != nil {
		log.Fatal(err)
	}

	// An "active sessions" page, with a button to sign out everywhere else.
	http.HandleFunc("/account/sessions", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if r.Method == http.MethodPost {
			n, err := store.DestroyOthers(r.Context(), s)
			if err != nil {
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintf(w, "signed out %d other sessions\n", n)
			return
		}
		list, err := store.ListByUser(r.Context(), s.UserID())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		for _, m := range list {
			fmt.Fprintf(w, "%s %s since %s, last seen %s\n", m.Label, m.UserAgent, m.Created, m.LastSeen)
		}
	})
}
