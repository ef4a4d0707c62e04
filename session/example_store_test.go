package session_test

import (
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

func ExampleRememberMe() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	store, err := session.NewStore(rdb, session.WithMaxSessionsPerUser(10))
	if err != nil {
		log.Fatal(err)
	}

	http.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		userID := "42" // after checking the password
		var opts []session.LoginOption
		if r.FormValue("remember") == "on" {
			// 30 days from now, a week without a visit, and a cookie that outlives the browser.
			opts = append(opts, session.RememberMe(7*24*time.Hour, 30*24*time.Hour))
		}
		// Before writing anything: the new token's cookie goes out with the headers.
		if err := store.Login(r.Context(), s, userID, opts...); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.AddFlash("Welcome back!")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	http.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := store.Destroy(r.Context(), s); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.AddFlash("Signed out.") // starts a new, anonymous session to carry the message
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		for _, msg := range s.Flashes() {
			fmt.Fprintln(w, msg)
		}
	})
	log.Fatal(http.ListenAndServe(":8080", session.Middleware(store)(http.DefaultServeMux)))
}

func ExampleSession_AuthenticatedWithin() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	store, err := session.NewStore(rdb)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("POST /account/email", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		// Judged at this request's time: a sign-in 10 minutes and 1 second ago is too old.
		if !s.AuthenticatedWithin(10 * time.Minute) {
			http.Redirect(w, r, "/login?step-up=1", http.StatusSeeOther)
			return
		}
		// ... change the e-mail address ...
	})
	log.Fatal(http.ListenAndServe(":8080", session.Middleware(store)(http.DefaultServeMux)))
}
