package main

import (
	"time"

	"github.com/alicebob/miniredis/v2"
)

// standIn is an in-process Redis stand-in for the demo: miniredis, with a ticker that lets its
// keys expire as real time passes (miniredis only expires keys when told time has passed). It runs
// gatehouse's scripts unchanged. It is for the demo only: the tests prove gatehouse on real Redis.
type standIn struct {
	m    *miniredis.Miniredis
	done chan struct{}
}

func startStandIn() (*standIn, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, err
	}
	s := &standIn{m: m, done: make(chan struct{})}
	go s.expire()
	return s, nil
}

func (s *standIn) expire() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

func (s *standIn) Addr() string { return s.m.Addr() }

func (s *standIn) Close() {
	close(s.done)
	s.m.Close()
}
