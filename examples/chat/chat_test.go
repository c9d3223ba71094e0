package main

import (
	"testing"
	"time"
)

func TestChat_RateLimit(t *testing.T) {
	c := newChat(100, 3, time.Second)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	for i := range 3 {
		if !c.allow("u") {
			t.Fatalf("message %d of the burst refused", i+1)
		}
	}
	if c.allow("u") {
		t.Fatal("a fourth message at once allowed")
	}
	if !c.allow("v") {
		t.Fatal("another user was limited by the first")
	}
	now = now.Add(time.Second)
	if !c.allow("u") || c.allow("u") {
		t.Fatal("want exactly one more message after one interval")
	}
}

func TestChat_ValidRoom(t *testing.T) {
	for room, want := range map[string]bool{"lobby": true, "a-1": true, "": false, "Lobby": false, "a b": false,
		"room:x": false, "x123456789012345678901234567890123": false} {
		if got := validRoom(room); got != want {
			t.Errorf("validRoom(%q) = %v, want %v", room, got, want)
		}
	}
}
